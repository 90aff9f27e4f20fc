//! `--config-file` (and `ETCD_CONFIG_FILE`), differential against etcd 3.5.1:
//! the same YAML file is given to our server and to etcd.
//! - A file starts the server with its settings, and conflicting flags and
//!   `ETCD_*` variables are ignored: the server answers on the file's port
//!   (not the flag's), the member list shows the file's name and URL, the
//!   quota is the file's (our Status reports it; etcd 3.5.1 logs it), an
//!   unknown key is ignored, and both log that flags and environment are
//!   ignored. The same outcome whether the file is named by the flag or the
//!   environment variable.
//! - Files etcd refuses are refused the same way: exit code 1 and the same
//!   logged message and error (`auto-compaction-retention: 24` is a number,
//!   not the string etcd wants; other type errors; an unknown mode; a bad
//!   retention; a missing file), with no data directory left behind.
//!
//! Every process is bounded in time and killed on drop.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{free_port, http_get, tail, temp_dir, Kind, LOG_TAIL_LINES};
use etcd_client::{Client, ConnectOptions};

/// How long a server may take to become healthy, or to exit when it refuses.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const QUOTA: i64 = 123_456_789;
/// The line etcd logs when a config file replaces flags and environment.
const LOADED: &str = "loaded server configuration, other configuration command line flags and environment variables will be ignored if provided";

/// A started `etcd`, killed on drop.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn spawn(kind: Kind, args: &[String], env: &[(String, String)], log: PathBuf) -> Process {
        let out = std::fs::File::create(&log).expect("create the log file");
        let err = out.try_clone().expect("clone the log file handle");
        let mut command = Command::new(kind.etcd_bin());
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", kind.label()));
        Process { child, log }
    }

    fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits (bounded) until `/health` on `port` is true, or the process exits.
    fn healthy_or_exited(&mut self, port: u16) -> Result<(), ExitStatus> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for etcd") {
                return Err(status);
            }
            if http_get(port, "/health").is_some_and(|r| r.contains(r#""health":"true""#)) {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "neither healthy nor exited within {START_TIMEOUT:?}:\n{}",
                tail(&self.log(), LOG_TAIL_LINES)
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded) for the process to exit.
    fn exit_status(&mut self) -> ExitStatus {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for etcd") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {START_TIMEOUT:?}:\n{}",
                tail(&self.log(), LOG_TAIL_LINES)
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Ports and directory of one server started from a file.
struct Layout {
    dir: tempfile::TempDir,
    client: u16,
    peer: u16,
}

impl Layout {
    fn new() -> Layout {
        Layout {
            dir: temp_dir(),
            client: free_port(),
            peer: free_port(),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A YAML file with this layout's settings followed by `extra`.
    fn write(&self, extra: &str) -> PathBuf {
        self.write_text(&self.text(extra))
    }

    /// This layout's settings followed by `extra`, as YAML.
    fn text(&self, extra: &str) -> String {
        let (c, p) = (self.client, self.peer);
        format!(
            "name: fromfile\n\
             data-dir: {data}\n\
             listen-client-urls: http://127.0.0.1:{c}\n\
             advertise-client-urls: http://127.0.0.1:{c}\n\
             listen-peer-urls: http://127.0.0.1:{p}\n\
             initial-advertise-peer-urls: http://127.0.0.1:{p}\n\
             initial-cluster: fromfile=http://127.0.0.1:{p}\n\
             initial-cluster-token: etcd-rs-config-file\n\
             {extra}",
            data = self.data_dir().display()
        )
    }

    fn write_text(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("etcd.conf.yml");
        std::fs::write(&path, text).expect("write the config file");
        path
    }

    fn log_path(&self, label: &str) -> PathBuf {
        self.dir.path().join(format!("{label}.log"))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn connect(port: u16) -> Client {
    let url = format!("http://127.0.0.1:{port}");
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5));
    tokio::time::timeout(
        Duration::from_secs(5),
        Client::connect([&url], Some(options)),
    )
    .await
    .unwrap_or_else(|_| panic!("connect to {url}: timed out"))
    .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// How the file is named to the server.
#[derive(Clone, Copy, Debug)]
enum Via {
    Flag,
    Env,
}

/// Starts `kind` from a file, with flags and environment that say otherwise;
/// what a client and the log see, with ports and paths normalized.
fn start_from_file(kind: Kind, via: Via) -> Vec<String> {
    let layout = Layout::new();
    let path = layout.write(&format!(
        "quota-backend-bytes: {QUOTA}\n\
         snapshot-count: 5000\n\
         auto-compaction-mode: revision\n\
         auto-compaction-retention: \"1000\"\n\
         no-such-key-in-etcd: 7\n\
         client-transport-security:\n  client-cert-auth: false\n"
    ));
    let flag_port = free_port();
    let flag_url = format!("http://127.0.0.1:{flag_port}");
    let mut args = vec![
        "--name=fromflag".to_string(),
        format!("--listen-client-urls={flag_url}"),
        format!("--advertise-client-urls={flag_url}"),
        "--quota-backend-bytes=999999999".to_string(),
        format!(
            "--data-dir={}",
            layout.dir.path().join("flag-data").display()
        ),
    ];
    let mut env = vec![
        ("ETCD_NAME".to_string(), "fromenv".to_string()),
        (
            "ETCD_QUOTA_BACKEND_BYTES".to_string(),
            "888888888".to_string(),
        ),
        (
            "ETCD_DATA_DIR".to_string(),
            layout.dir.path().join("env-data").display().to_string(),
        ),
    ];
    match via {
        Via::Flag => args.insert(0, format!("--config-file={}", path.display())),
        Via::Env => env.push(("ETCD_CONFIG_FILE".to_string(), path.display().to_string())),
    }
    let mut process = Process::spawn(kind, &args, &env, layout.log_path("start"));
    let label = format!("{} ({via:?})", kind.label());
    if let Err(status) = process.healthy_or_exited(layout.client) {
        panic!(
            "{label} exited with {status}:\n{}",
            tail(&process.log(), LOG_TAIL_LINES)
        );
    }
    let mut seen = vec![format!(
        "flag port answers: {}",
        http_get(flag_port, "/health").is_some()
    )];
    let (members, quota) = runtime().block_on(async {
        let mut c = connect(layout.client).await;
        let members = c.member_list().await.expect("member list");
        let status = c.status().await.expect("status");
        (members, status.db_size_quota())
    });
    for m in members.members() {
        seen.push(format!(
            "member {} client {:?} peer {:?}",
            m.name(),
            m.client_urls(),
            m.peer_urls()
        ));
    }
    let log = process.log();
    match kind {
        // etcd 3.5.1's Status has no quota field; it logs the quota it uses.
        Kind::Ours => assert_eq!(quota, QUOTA, "{label}"),
        _ => assert!(
            log.contains(&format!("\"quota-size-bytes\":{QUOTA}")),
            "{label}:\n{log}"
        ),
    }
    seen.push(format!(
        "logs that flags are ignored: {}",
        log.contains(LOADED)
    ));
    seen.push(format!(
        "data in the file's data-dir: {}",
        layout.data_dir().join("member").is_dir()
    ));
    seen.push(format!(
        "data elsewhere: {}",
        layout.dir.path().join("flag-data").exists() || layout.dir.path().join("env-data").exists()
    ));
    let (c, p) = (layout.client.to_string(), layout.peer.to_string());
    seen.iter()
        .map(|s| s.replace(&c, "<client>").replace(&p, "<peer>"))
        .collect()
}

#[test]
fn a_config_file_wins_over_flags_and_environment_as_in_etcd() {
    for via in [Via::Flag, Via::Env] {
        let ours = start_from_file(Kind::Ours, via);
        let reference = start_from_file(Kind::Ref35, via);
        assert_eq!(
            ours,
            vec![
                "flag port answers: false".to_string(),
                "member fromfile client [\"http://127.0.0.1:<client>\"] peer [\"http://127.0.0.1:<peer>\"]".to_string(),
                "logs that flags are ignored: true".to_string(),
                "data in the file's data-dir: true".to_string(),
                "data elsewhere: false".to_string(),
            ],
            "{via:?}"
        );
        assert_eq!(ours, reference, "ours vs etcd 3.5.1, {via:?}");
    }
}

/// What a refused start looks like: exit code, the logged message and its
/// error, whether a data directory was made.
fn refused(kind: Kind, layout: &Layout, path: &Path) -> (Option<i32>, String, String, bool) {
    let _ = std::fs::remove_dir_all(layout.data_dir());
    let args = [format!("--config-file={}", path.display())];
    let mut process = Process::spawn(kind, &args, &[], layout.log_path(kind.label()));
    let status = process.exit_status();
    let log = process.log();
    let refusal = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["msg"] == "failed to verify flags" || v["msg"] == "failed to start etcd")
        .unwrap_or_else(|| panic!("{}: no refusal logged:\n{log}", kind.label()));
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    (
        status.code(),
        text(&refusal["msg"]),
        text(&refusal["error"]),
        layout.data_dir().exists(),
    )
}

#[test]
fn refused_config_files_are_refused_as_etcd_refuses_them() {
    let layout = Layout::new();
    // (what, the file's text; None: no file)
    let cases: Vec<(&str, Option<String>)> =
        vec![
            (
                "a number for auto-compaction-retention",
                Some(layout.text("auto-compaction-retention: 24\n")),
            ),
            (
                "a string for a number",
                Some(layout.text("snapshot-count: \"5\"\n")),
            ),
            ("a number for a boolean", Some(layout.text("pre-vote: 1\n"))),
            (
                "a list for a string",
                Some(layout.text("initial-cluster-state: [new]\n")),
            ),
            (
                "a nested type error",
                Some(layout.text("peer-transport-security:\n  cert-file: 5\n")),
            ),
            ("not a mapping", Some("just a string\n".to_string())),
            (
                "an unknown mode",
                Some(layout.text("auto-compaction-mode: daily\n")),
            ),
            (
                "a bad retention",
                Some(layout.text(
                    "auto-compaction-mode: periodic\nauto-compaction-retention: \"5 days\"\n",
                )),
            ),
            ("a missing file", None),
        ];
    for (what, text) in cases {
        let path = match &text {
            Some(text) => layout.write_text(text),
            None => layout.dir.path().join("missing.yml"),
        };
        let ours = refused(Kind::Ours, &layout, &path);
        let reference = refused(Kind::Ref35, &layout, &path);
        eprintln!("{what}: etcd 3.5.1 {reference:?}");
        assert_eq!(ours.0, Some(1), "{what}: exit code");
        assert!(!ours.3, "{what}: a data directory was left behind");
        assert_eq!(
            ours, reference,
            "{what}; ours vs etcd 3.5.1; file:\n{text:?}"
        );
    }
    // A YAML syntax error: the parsers word the details differently.
    let path = layout.write_text(": bad: yaml: [\n");
    for kind in [Kind::Ours, Kind::Ref35] {
        let (code, msg, error, _) = refused(kind, &layout, &path);
        assert_eq!((code, msg.as_str()), (Some(1), "failed to verify flags"));
        assert!(
            error.starts_with("error converting YAML to JSON: yaml: "),
            "{}: {error}",
            kind.label()
        );
    }
}
