//! Our etcdctl's global behaviour beside the real etcdctl 3.5.1: the
//! `ETCDCTL_*` variables (each global flag's, conflicts with flags,
//! unknown ones, `--debug`'s listing), endpoint failover, TLS
//! (`--cacert/--cert/--key`, `--insecure-skip-tls-verify`, `https://`,
//! a wrong CA), DNS SRV discovery (against a DNS server run by the test)
//! and the shell completion scripts.
//!
//! Both etcdctls talk to the same server here (these behaviours are the
//! client's), so outputs compare without normalization; clientv3's and
//! grpc-go's own log lines on stderr (`{"level":…`, `WARNING:`, `INFO:`)
//! are left out of the comparison.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{free_port, EtcdProcess, Etcdctl, Kind, Output};
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

/// The etcdctls compared: the real 3.5.1 and ours.
fn ctls() -> [Etcdctl; 2] {
    [Etcdctl::reference(Kind::Ref35), Etcdctl::ours()]
}

/// Stdout, stderr without the Go client's log lines, and the exit code.
fn comparable(out: &Output) -> (String, String, i32) {
    let stderr = out
        .stderr
        .lines()
        .filter(|l| {
            !l.starts_with("{\"level\":") && !l.starts_with("WARNING: ") && !l.starts_with("INFO: ")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    (out.stdout.clone(), stderr, out.code)
}

/// Runs the same invocation with both etcdctls and requires the same
/// outputs; ours is returned.
fn same(env: &[(&str, &str)], args: &[&str], stdin: Option<&[u8]>) -> Output {
    let [reference, ours] = ctls();
    let expected = reference.run_env(env, args, stdin);
    let got = ours.run_env(env, args, stdin);
    assert_eq!(
        comparable(&got),
        comparable(&expected),
        "etcdctl {args:?} with {env:?}: ours (left) differs from etcdctl 3.5.1 (right)\n\
         ours: {got:#?}\nreference: {expected:#?}"
    );
    got
}

/// Lines of stderr that are zap log lines with this message.
fn zap_lines<'a>(out: &'a Output, msg: &str) -> Vec<&'a str> {
    out.stderr
        .lines()
        .filter(|l| l.starts_with("{\"level\":") && l.contains(&format!("\"msg\":\"{msg}\"")))
        .collect()
}

#[test]
fn environment_variables_work_as_in_etcdctl() {
    let server = EtcdProcess::start(Kind::Ours, &[]);
    let ep = server.endpoint();
    let ours = Etcdctl::ours();
    assert_eq!(ours.run(&ep, &["put", "k", "v\u{1}"], None).code, 0);
    let at = |extra: &[(&'static str, &'static str)]| with_endpoint(&ep, extra);
    let out = same(&at(&[]), &["get", "k"], None);
    assert_eq!(out.stdout, "k\nv\u{1}\n");
    let dead_first = format!("127.0.0.1:{},{ep}", free_port());
    same(&[("ETCDCTL_ENDPOINTS", &dead_first)], &["get", "k"], None);
    same(&at(&[("ETCDCTL_WRITE_OUT", "json")]), &["get", "k"], None);
    same(
        &at(&[("ETCDCTL_WRITE_OUT", "fields"), ("ETCDCTL_HEX", "true")]),
        &["get", "k"],
        None,
    );
    let hex = same(&at(&[("ETCDCTL_HEX", "1")]), &["get", "k"], None);
    assert_eq!(hex.stdout, "\\x6b\n\\x76\\x01\n");
    // pflag leaves the zero value behind a value that does not parse.
    same(&at(&[("ETCDCTL_HEX", "maybe")]), &["get", "k"], None);
    same(&at(&[("ETCDCTL_DIAL_TIMEOUT", "zz")]), &["get", "k"], None);
    let bad = same(&at(&[("ETCDCTL_WRITE_OUT", "yaml")]), &["get", "k"], None);
    assert_eq!(bad.code, 4);
    // etcdctl reads --command-timeout before it applies the variables, so
    // the variable reaches only commands that build their client first.
    same(
        &at(&[("ETCDCTL_COMMAND_TIMEOUT", "1ns")]),
        &["get", "k"],
        None,
    );
    let late = same(
        &at(&[("ETCDCTL_COMMAND_TIMEOUT", "1ns")]),
        &["compaction", "1"],
        None,
    );
    assert_eq!(late.stderr.trim(), "Error: context deadline exceeded");
    // The keepalive variables are visible in --debug's listing (below).
    same(
        &at(&[
            ("ETCDCTL_KEEPALIVE_TIME", "3s"),
            ("ETCDCTL_KEEPALIVE_TIMEOUT", "7s"),
        ]),
        &["get", "k"],
        None,
    );
    // Discovery through the machine's resolver, which knows no such domain.
    let srv = same(
        &at(&[("ETCDCTL_DISCOVERY_SRV", "example.invalid")]),
        &["get", "k"],
        None,
    );
    assert!(
        srv.stderr
            .starts_with("Error: dns lookup errors: lookup _etcd-client-ssl._tcp.example.invalid"),
        "{srv:?}"
    );
    same(
        &at(&[
            ("ETCDCTL_DISCOVERY_SRV", "example.invalid"),
            ("ETCDCTL_DISCOVERY_SRV_NAME", "blue"),
            ("ETCDCTL_INSECURE_DISCOVERY", "false"),
        ]),
        &["get", "k"],
        None,
    );
    same(&[], &["-d", "bad domain", "get", "k"], None);

    // A variable that is not a global flag's is warned about; one whose
    // flag is also given stops etcdctl (zap's fatal line, exit 1), but only
    // once a client is built: usage errors come first.
    let [reference, ours_ctl] = ctls();
    for ctl in [&reference, &ours_ctl] {
        let out = ctl.run_env(&at(&[("ETCDCTL_PREFIX", "true")]), &["get", "k"], None);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, "k\nv\u{1}\n"),
            "{out:?}"
        );
        let warned = zap_lines(&out, "unrecognized environment variable");
        assert!(
            warned.len() == 1
                && warned[0].contains("\"environment-variable\":\"ETCDCTL_PREFIX=true\""),
            "{} {out:?}",
            ctl.bin.display()
        );
        for (env, args) in [
            (
                at(&[("ETCDCTL_WRITE_OUT", "json")]),
                vec!["-w", "simple", "get", "k"],
            ),
            (at(&[]), vec!["--endpoints", ep.as_str(), "get", "k"]),
        ] {
            let out = ctl.run_env(&env, &args, None);
            let fatal = zap_lines(
                &out,
                "conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag))",
            );
            assert_eq!(
                (out.code, out.stdout.as_str(), fatal.len()),
                (1, "", 1),
                "{out:?}"
            );
            assert!(fatal[0].starts_with("{\"level\":\"fatal\""), "{out:?}");
        }
    }
    same(
        &at(&[("ETCDCTL_WRITE_OUT", "json")]),
        &["-w", "simple", "get"],
        None,
    );
}

/// Environment variables for one invocation.
type Env<'a> = Vec<(&'a str, &'a str)>;

/// `--debug` (or `ETCDCTL_DEBUG`) lists every global flag with its value.
#[test]
fn debug_lists_the_global_flags_like_etcdctl() {
    let server = EtcdProcess::start(Kind::Ours, &[]);
    let ep = server.endpoint();
    let listing = |out: &Output| -> Vec<String> {
        out.stderr
            .lines()
            .filter(|l| l.starts_with("ETCDCTL_"))
            .map(str::to_string)
            .collect()
    };
    let cases: Vec<(Env, Vec<String>)> = vec![
        (
            vec![],
            vec![
                "--debug".into(),
                format!("--endpoints={ep}, 127.0.0.1:1"),
                "-w".into(),
                "json".into(),
                "--hex".into(),
                "--dial-timeout=1500ms".into(),
                "--command-timeout=1m30s".into(),
                "--insecure-discovery=false".into(),
                "--user=nobody:secret".into(),
                "get".into(),
                "k".into(),
            ],
        ),
        (
            vec![
                ("ETCDCTL_DEBUG", "true"),
                ("ETCDCTL_ENDPOINTS", ep.as_str()),
                ("ETCDCTL_KEEPALIVE_TIME", "3s"),
                ("ETCDCTL_KEEPALIVE_TIMEOUT", "7s"),
                ("ETCDCTL_DIAL_TIMEOUT", "3s"),
                ("ETCDCTL_COMMAND_TIMEOUT", "4s"),
                ("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "true"),
                ("ETCDCTL_INSECURE_TRANSPORT", "false"),
                ("ETCDCTL_CACERT", "/nonexistent/ca.pem"),
                ("ETCDCTL_CERT", "/nonexistent/c.pem"),
                ("ETCDCTL_KEY", "/nonexistent/c.key"),
                ("ETCDCTL_PASSWORD", "pw"),
                ("ETCDCTL_DISCOVERY_SRV_NAME", "blue"),
            ],
            vec!["get".into(), "k".into()],
        ),
    ];
    let [reference, ours] = ctls();
    for (env, args) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let expected = reference.run_env(&env, &args, None);
        let got = ours.run_env(&env, &args, None);
        assert_eq!(listing(&expected).len(), 18, "{expected:?}");
        assert_eq!(listing(&got), listing(&expected), "{env:?} {args:?}");
    }
}

#[test]
fn endpoint_failover_like_etcdctl() {
    let server = EtcdProcess::start(Kind::Ours, &[]);
    let live = server.endpoint();
    let dead = format!("127.0.0.1:{}", free_port());
    for (i, endpoints) in [format!("{dead},{live}"), format!("{live},{dead}")]
        .iter()
        .enumerate()
    {
        for ctl in ctls() {
            let put = ctl.run(endpoints, &["put", &format!("f{i}"), "v"], None);
            assert_eq!((put.code, put.stdout.as_str()), (0, "OK\n"), "{put:?}");
        }
        let flag = format!("--endpoints={endpoints}");
        let got = same(&[], &[&flag, "get", "f", "--prefix", "--keys-only"], None);
        assert_eq!(got.code, 0, "{got:?}");
    }
    let all_dead = format!("{dead},127.0.0.1:{}", free_port());
    let flag = format!("--endpoints={all_dead}");
    for args in [&["get", "k"][..], &["put", "k", "v"]] {
        let mut full = vec![flag.as_str(), "--dial-timeout=1s", "--command-timeout=2s"];
        full.extend_from_slice(args);
        let started = Instant::now();
        let out = same(&[], &full, None);
        assert_eq!(
            (out.code, out.stderr.trim()),
            (1, "Error: context deadline exceeded"),
            "{out:?}"
        );
        // Bounded by the dial and command timeouts (with room for a slow machine).
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }
}

/// A CA, and a certificate it signs for `sans` with `usage`.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn generate() -> Certs {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).expect("write a certificate file")
        };
        for ca in ["ca", "other-ca"] {
            let ca_key = KeyPair::generate().expect("CA key");
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let cert = params.self_signed(&ca_key).expect("CA certificate");
            write(&format!("{ca}.pem"), cert.pem());
            if ca == "other-ca" {
                continue;
            }
            let issuer = Issuer::new(params, ca_key);
            let leaves = [
                (
                    "server",
                    vec!["127.0.0.1", "localhost", "secure.test"],
                    ExtendedKeyUsagePurpose::ServerAuth,
                ),
                ("client", vec![], ExtendedKeyUsagePurpose::ClientAuth),
            ];
            for (name, sans, usage) in leaves {
                let sans: Vec<String> = sans.into_iter().map(String::from).collect();
                let mut leaf = CertificateParams::new(sans).expect("params");
                leaf.extended_key_usages = vec![usage];
                let key = KeyPair::generate().expect("key");
                let cert = leaf.signed_by(&key, &issuer).expect("sign");
                write(&format!("{name}.pem"), cert.pem());
                write(&format!("{name}.key"), key.serialize_pem());
            }
        }
        Certs { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// Our server on an https client URL; `client_cert_auth` asks clients for
/// a certificate signed by the CA.
struct TlsServer {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsServer {
    fn start(certs: &Certs, client_cert_auth: bool) -> TlsServer {
        let data = tempfile::tempdir().expect("data dir");
        let port = free_port();
        let url = format!("https://127.0.0.1:{port}");
        let peer = format!("http://127.0.0.1:{}", free_port());
        let mut args = vec![
            format!("--data-dir={}", data.path().join("d").display()),
            format!("--listen-client-urls={url}"),
            format!("--advertise-client-urls={url}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=default={peer}"),
            format!("--cert-file={}", certs.path("server.pem")),
            format!("--key-file={}", certs.path("server.key")),
        ];
        if client_cert_auth {
            args.push(format!("--trusted-ca-file={}", certs.path("ca.pem")));
            args.push("--client-cert-auth".into());
        }
        let log = std::fs::File::create(data.path().join("etcd.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_etcd"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start etcd");
        let server = TlsServer {
            child,
            port,
            _data: data,
        };
        server.wait_ready(certs);
        server
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&self, certs: &Certs) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let ctl = Etcdctl::reference(Kind::Ref35);
        let flags = [
            format!("--endpoints={}", self.url()),
            format!("--cacert={}", certs.path("ca.pem")),
            format!("--cert={}", certs.path("client.pem")),
            format!("--key={}", certs.path("client.key")),
        ];
        let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
        args.extend(["--command-timeout=1s", "endpoint", "health"]);
        loop {
            let out = ctl.run_env(&[], &args, None);
            if out.code == 0 {
                return;
            }
            let log = self._data.path().join("etcd.log");
            assert!(
                Instant::now() < deadline,
                "TLS server not ready: {out:?}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn tls_flags_and_variables_like_etcdctl() {
    let certs = Certs::generate();
    let mutual = TlsServer::start(&certs, true);
    let plain_tls = TlsServer::start(&certs, false);
    let ca = format!("--cacert={}", certs.path("ca.pem"));
    let cert = format!("--cert={}", certs.path("client.pem"));
    let key = format!("--key={}", certs.path("client.key"));
    let mutual_ep = format!("--endpoints={}", mutual.url());
    let tls_ep = format!("--endpoints={}", plain_tls.url());

    for ctl in ctls() {
        let put = ctl.run_env(&[], &[&mutual_ep, &ca, &cert, &key, "put", "t", "1"], None);
        assert_eq!((put.code, put.stdout.as_str()), (0, "OK\n"), "{put:?}");
    }
    let got = same(&[], &[&mutual_ep, &ca, &cert, &key, "get", "t"], None);
    assert_eq!(got.stdout, "t\n1\n");
    // The same through the variables.
    let paths = [
        ("ETCDCTL_ENDPOINTS", mutual.url()),
        ("ETCDCTL_CACERT", certs.path("ca.pem")),
        ("ETCDCTL_CERT", certs.path("client.pem")),
        ("ETCDCTL_KEY", certs.path("client.key")),
    ];
    let env: Vec<(&str, &str)> = paths.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(same(&env, &["get", "t"], None).code, 0);
    // An https:// endpoint alone asks for TLS (verified against the CA).
    assert_eq!(same(&[], &[&tls_ep, &ca, "get", "t"], None).code, 0);
    // No verification of the server, with the flag and the variable. As in
    // etcdctl, --insecure-skip-tls-verify acts only on a TLS configuration
    // that flags made (a certificate, a CA, or --insecure-transport=false):
    // with an https:// endpoint alone the server is still verified.
    let unverified = same(
        &[],
        &[&tls_ep, "--insecure-skip-tls-verify", "get", "t"],
        None,
    );
    assert_eq!(
        comparable(&unverified).1,
        "Error: context deadline exceeded\n"
    );
    let skip = ["--insecure-transport=false", "--insecure-skip-tls-verify"];
    assert_eq!(
        same(&[], &[&tls_ep, skip[0], skip[1], "get", "t"], None).code,
        0
    );
    let skip_env = [
        ("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "true"),
        ("ETCDCTL_INSECURE_TRANSPORT", "false"),
    ];
    assert_eq!(same(&skip_env, &[&tls_ep, "get", "t"], None).code, 0);
    assert_eq!(
        same(
            &[],
            &[
                &mutual_ep,
                &cert,
                &key,
                "--insecure-skip-tls-verify",
                "get",
                "t"
            ],
            None
        )
        .code,
        0
    );
    // A CA that did not sign the server's certificate: refused.
    let wrong_ca = format!("--cacert={}", certs.path("other-ca.pem"));
    let [reference, ours] = ctls();
    let args = [
        &tls_ep,
        wrong_ca.as_str(),
        "--command-timeout=2s",
        "get",
        "t",
    ];
    let expected = reference.run_env(&[], &args, None);
    let got = ours.run_env(&[], &args, None);
    let error_line = |o: &Output| comparable(o).1;
    assert_ne!(expected.code, 0, "{expected:?}");
    assert_eq!(
        (got.code, got.stdout.as_str(), error_line(&got)),
        (
            expected.code,
            expected.stdout.as_str(),
            error_line(&expected)
        ),
        "a wrong CA: ours {got:#?}\nreference {expected:#?}"
    );
    // The cause is in clientv3's retry warning, for both.
    for out in [&expected, &got] {
        let warning = zap_lines(out, "retrying of unary invoker failed");
        assert!(
            warning
                .iter()
                .any(|l| l.contains("authentication handshake failed")),
            "{out:?}"
        );
    }
    // Empty file flags are refused before connecting.
    same(&[], &[&tls_ep, "--cacert=", "get", "t"], None);
}

/// A DNS server for the test: SRV answers from a table, NXDOMAIN for
/// anything else; it stops when dropped.
struct FakeDns {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FakeDns {
    fn start(records: Vec<(String, u16, String)>) -> FakeDns {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the DNS socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let addr = socket.local_addr().expect("DNS address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut buf = [0u8; 1500];
            while !stopping.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = dns_reply(&buf[..n], &records) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        FakeDns {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The answer to one query: the question echoed, SRV records for its name
/// (`records`: name, port, target), NXDOMAIN when there are none.
fn dns_reply(query: &[u8], records: &[(String, u16, String)]) -> Option<Vec<u8>> {
    let mut at = 12;
    let mut labels = Vec::new();
    while *query.get(at)? != 0 {
        let len = usize::from(query[at]);
        labels.push(String::from_utf8_lossy(query.get(at + 1..at + 1 + len)?).into_owned());
        at += 1 + len;
    }
    let question_end = at + 5;
    let name = labels.join(".");
    let answers: Vec<&(String, u16, String)> =
        records.iter().filter(|(n, _, _)| *n == name).collect();
    let mut out = query.get(..2)?.to_vec();
    let rcode: u16 = if answers.is_empty() { 3 } else { 0 };
    out.extend_from_slice(&(0x8180 | rcode).to_be_bytes());
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..question_end)?);
    for (_, port, target) in answers {
        out.extend_from_slice(&[0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 60]);
        let mut data = vec![0, 0, 0, 0];
        data.extend_from_slice(&port.to_be_bytes());
        for label in target.trim_end_matches('.').split('.') {
            data.push(label.len() as u8);
            data.extend_from_slice(label.as_bytes());
        }
        data.push(0);
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    Some(out)
}

#[test]
fn dns_srv_discovery_end_to_end() {
    let certs = Certs::generate();
    let plain = EtcdProcess::start(Kind::Ours, &[]);
    let tls = TlsServer::start(&certs, false);
    let ours = Etcdctl::ours();
    assert_eq!(
        ours.run(&plain.endpoint(), &["put", "d", "plain"], None)
            .code,
        0
    );
    let dns = FakeDns::start(vec![
        (
            "_etcd-client._tcp.plain.test".into(),
            plain.client_port(),
            "localhost.".into(),
        ),
        (
            "_etcd-client-blue._tcp.plain.test".into(),
            plain.client_port(),
            "localhost.".into(),
        ),
        (
            "_etcd-client-ssl._tcp.secure.test".into(),
            tls.port,
            "localhost.".into(),
        ),
        (
            "_etcd-client._tcp.secure.test".into(),
            plain.client_port(),
            "localhost.".into(),
        ),
    ]);
    let server = dns.addr.to_string();
    let env = [("ETCD_RS_TEST_DNS_SERVER", server.as_str())];
    let run = |args: &[&str]| ours.run_env(&env, args, None);

    let out = run(&["-d", "plain.test", "get", "d", "--print-value-only"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "plain\n"), "{out:?}");
    let out = run(&[
        "--discovery-srv=plain.test",
        "--discovery-srv-name=blue",
        "get",
        "d",
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "d\nplain\n"),
        "{out:?}"
    );
    let out = run(&["-d", "plain.test", "--debug", "get", "d"]);
    assert!(
        out.stderr.contains("ETCDCTL_DISCOVERY_SRV=plain.test\n"),
        "{out:?}"
    );

    // Secure discovery: the http record is dropped with a note, and the
    // server's certificate is checked against the domain.
    let ca = format!("--cacert={}", certs.path("ca.pem"));
    let out = run(&[
        "-d",
        "secure.test",
        "--insecure-discovery=false",
        &ca,
        "put",
        "d",
        "tls",
    ]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "OK\n"), "{out:?}");
    assert_eq!(
        out.stderr,
        format!(
            "ignoring discovered insecure endpoint \"http://localhost.:{}\"\n",
            plain.client_port()
        )
    );
    // Insecure discovery (the default) keeps both, https first.
    let out = run(&[
        "-d",
        "secure.test",
        &ca,
        "--debug",
        "get",
        "d",
        "--print-value-only",
    ]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "tls\n"), "{out:?}");

    let out = run(&["-d", "nothing.test", "get", "d"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stderr,
        format!(
            "Error: dns lookup errors: lookup _etcd-client-ssl._tcp.nothing.test on {server}: \
             no such host and lookup _etcd-client._tcp.nothing.test on {server}: no such host\n"
        )
    );
}

/// Top-level commands on this branch; every group adds its own.
const COMMANDS: [&str; 10] = [
    "get",
    "put",
    "del",
    "txn",
    "compaction",
    "version",
    "completion",
    "auth",
    "user",
    "role",
];

#[test]
fn completion_scripts_parse_and_name_every_command() {
    let ours = Etcdctl::ours();
    let dir = tempfile::tempdir().expect("temp dir");
    for (shell, checker) in [("bash", "bash"), ("zsh", "zsh")] {
        let out = ours.run_env(&[], &["completion", shell], None);
        assert_eq!(out.code, 0, "{out:?}");
        for command in COMMANDS {
            assert!(
                out.stdout.contains(command),
                "the {shell} script does not mention {command}"
            );
        }
        let script = dir.path().join(format!("etcdctl.{shell}"));
        std::fs::write(&script, &out.stdout).expect("write the script");
        if !has_program(checker) {
            eprintln!(
                "note: {checker} is not installed; the {shell} script's syntax is not checked"
            );
            continue;
        }
        let check = Command::new(checker)
            .arg("-n")
            .arg(&script)
            .output()
            .expect("run the shell");
        assert!(
            check.status.success(),
            "{checker} -n rejects the script: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let out = ours.run_env(&[], &["completion"], None);
    assert_ne!(out.code, 0, "{out:?}");
}

fn has_program(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| Path::new(&dir).join(name).is_file())
    })
}

/// `ETCDCTL_ENDPOINTS=<endpoint>` and `extra`.
fn with_endpoint<'a>(endpoint: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("ETCDCTL_ENDPOINTS", endpoint)];
    env.extend_from_slice(extra);
    env
}
