//! Helpers for the snapshot tests: a workload run through etcdctl,
//! `snapshot save`, dumps of every key with its revisions and lease,
//! HashKV, and members started by hand from restored data dirs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use etcd_client::{Client, GetOptions};

/// Bound on one client call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
pub const LEASE_TTL_SECS: &str = "600";

pub fn ok(output: Output, what: &str) -> Output {
    assert_eq!(output.code, 0, "{what} failed: {output:?}");
    output
}

/// The last line of stderr: etcd's tools end with `Error: …`.
pub fn error_line(output: &Output) -> String {
    output.stderr.lines().last().unwrap_or_default().to_string()
}

/// A member started from a given data directory (a restored one).
pub struct Member {
    pub kind: Kind,
    pub child: Option<Child>,
    pub client_port: u16,
    pub log: PathBuf,
    pub args: Vec<String>,
}

/// How a restored cluster is laid out: names, advertised peer URLs.
pub struct Layout {
    pub token: String,
    /// (name, advertised peer URL, listen peer port, client port)
    pub members: Vec<(String, String, u16, u16)>,
}

impl Layout {
    /// `n` members advertising the peer port they listen on.
    pub fn new(n: usize, token: &str) -> Layout {
        let members = (0..n)
            .map(|i| {
                let peer = free_port();
                (
                    format!("m{i}"),
                    format!("http://127.0.0.1:{peer}"),
                    peer,
                    free_port(),
                )
            })
            .collect();
        Layout {
            token: token.into(),
            members,
        }
    }

    pub fn initial_cluster(&self) -> String {
        let parts: Vec<String> = self
            .members
            .iter()
            .map(|(name, url, _, _)| format!("{name}={url}"))
            .collect();
        parts.join(",")
    }

    /// etcdutl's restore flags for member `i`.
    pub fn restore_args(&self, i: usize, snapshot: &Path, data_dir: &Path) -> Vec<String> {
        let (name, url, _, _) = &self.members[i];
        vec![
            "snapshot".into(),
            "restore".into(),
            snapshot.display().to_string(),
            format!("--name={name}"),
            format!("--data-dir={}", data_dir.display()),
            format!("--initial-cluster={}", self.initial_cluster()),
            format!("--initial-cluster-token={}", self.token),
            format!("--initial-advertise-peer-urls={url}"),
        ]
    }

    pub fn restore(&self, tool: &Path, i: usize, snapshot: &Path, data_dir: &Path, extra: &[&str]) {
        let mut args = self.restore_args(i, snapshot, data_dir);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(run(tool, &args), "snapshot restore");
    }

    /// Spawns member `i` of `kind` on `data_dir` (not waiting).
    pub fn spawn(&self, kind: Kind, i: usize, data_dir: &Path) -> Member {
        let (name, url, peer_port, client_port) = &self.members[i];
        let client = format!("http://127.0.0.1:{client_port}");
        let args = vec![
            format!("--name={name}"),
            format!("--data-dir={}", data_dir.display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-advertise-peer-urls={url}"),
            format!("--initial-cluster={}", self.initial_cluster()),
            format!("--initial-cluster-token={}", self.token),
            "--heartbeat-interval=50".into(),
            "--election-timeout=500".into(),
        ];
        let log = data_dir.with_extension("log");
        let file = std::fs::File::create(&log).expect("create the member log");
        let child = Command::new(kind.etcd_bin())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone the log handle"))
            .stderr(file)
            .spawn()
            .expect("start a member");
        Member {
            kind,
            child: Some(child),
            client_port: *client_port,
            log,
            args,
        }
    }
}

impl Member {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn wait_healthy(&mut self) {
        self.wait_until("was not healthy in time", |port| {
            http_get(port, "/health").is_some_and(|r| r.contains(r#""health":"true""#))
        });
    }

    /// Waits until the member serves a linearizable read through the
    /// gateway (`/health` is false while an alarm is active, and etcd 3.4
    /// has no `?exclude=`).
    pub fn wait_serving(&mut self) {
        self.wait_until("did not serve reads in time", |port| {
            http_request(port, "POST", "/v3/kv/range", r#"{"key":"AA=="}"#)
                .is_some_and(|r| r.starts_with("HTTP/1.1 200") && r.contains("\"revision\""))
        });
    }

    /// Polls `ready(client port)` until it holds (bounded); fails if the
    /// process exits first.
    fn wait_until(&mut self, failure: &str, ready: impl Fn(u16) -> bool) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.fail(&format!("exited with {status}"));
            }
            if ready(self.client_port) {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(failure);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn fail(&self, what: &str) -> ! {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        panic!(
            "{} started from a restored directory {what}\nflags: {:?}\nlog:\n{}",
            self.kind.label(),
            self.args,
            tail(&log, LOG_TAIL_LINES)
        );
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub async fn connect(url: String) -> Client {
    tokio::time::timeout(CALL_TIMEOUT, Client::connect([url.clone()], None))
        .await
        .unwrap_or_else(|_| panic!("connect to {url}: timed out"))
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

pub async fn bounded<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> T {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// (key, value, create, mod, version, lease) of every key, and the revision.
pub type Dump = (i64, Vec<(String, String, i64, i64, i64, i64)>);

pub async fn dump(client: &mut Client, serializable: bool) -> Dump {
    let mut options = GetOptions::new().with_prefix();
    if serializable {
        options = options.with_serializable();
    }
    let resp = bounded("get all", client.get("", Some(options))).await;
    let kvs = resp
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().unwrap().to_string(),
                kv.value_str().unwrap().to_string(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.lease(),
            )
        })
        .collect();
    (resp.header().unwrap().revision(), kvs)
}

/// The current revision (a linearizable read of one absent key).
pub async fn revision(client: &mut Client) -> i64 {
    let resp = bounded("get", client.get("absent", None)).await;
    resp.header().unwrap().revision()
}

/// (hash, hash revision, compact revision) at `rev` (0: current).
pub async fn hash_kv(client: &mut Client, rev: i64) -> (u32, i64, i64) {
    let h = bounded("hash kv", client.hash_kv(rev)).await;
    (h.hash(), h.hash_revision(), h.compact_version())
}

/// Puts, a delete, a compaction and a lease with two keys, through etcdctl
/// 3.5.1; returns the lease ID. Ends at revision 9, compacted at 4.
pub fn workload(ctl: &Etcdctl, endpoint: &str) -> String {
    let run = |args: &[&str]| {
        let out = ctl.run(endpoint, args, None);
        assert_eq!(out.code, 0, "etcdctl {args:?}: {out:?}");
        out.stdout
    };
    run(&["put", "k1", "v1"]);
    run(&["put", "k2", "v2"]);
    run(&["put", "k3", "v3"]);
    run(&["put", "k1", "v1b"]);
    run(&["del", "k2"]);
    let granted = run(&["lease", "grant", LEASE_TTL_SECS]);
    let lease = granted
        .split_whitespace()
        .nth(1)
        .expect("lease ID")
        .to_string();
    run(&["put", &format!("--lease={lease}"), "lk1", "l1"]);
    run(&["put", &format!("--lease={lease}"), "lk2", "l2"]);
    run(&["compaction", "4"]);
    run(&["put", "k4", "v4"]);
    lease
}

pub const FINAL_REVISION: i64 = 9;
pub const COMPACT_REVISION: i64 = 4;

/// etcdctl's `snapshot save` into `dir`, normalized for comparison.
pub fn save(ctl: &Etcdctl, process: &EtcdProcess, dir: &Path, name: &str) -> (PathBuf, Output) {
    let path = dir.join(name);
    let out = ctl.run(
        &process.endpoint(),
        &["snapshot", "save", &path.display().to_string()],
        None,
    );
    let stdout = out.stdout.replace(&dir.display().to_string(), "<dir>");
    (
        path,
        Output {
            stdout,
            stderr: String::new(),
            code: out.code,
            ..Output::default()
        },
    )
}
