//! Data both ways between the real etcd and ours, through snapshot files.
//!
//! - etcd 3.5.1 and 3.4.23 write (puts, deletes, a txn, a lease with
//!   attached keys, a compaction, a NOSPACE alarm), `etcdctl snapshot save`
//!   downloads etcd's bbolt file, our `etcdutl snapshot restore` makes a
//!   data dir of it, and our server started there serves the same rows
//!   (`etcdctl get --prefix -w json`), leases, alarm and HashKV at the same
//!   revision. A raw copy of etcd's `member/snap/db` restores the same way
//!   with `--skip-hash-check`.
//! - The reverse: our server, the same workload, `etcdctl snapshot save`
//!   (3.5.1 and 3.4.23) of ours, then the real `etcdutl snapshot restore`
//!   (3.5.1) and `etcdctl snapshot restore` (3.4.23), and the real etcd
//!   started there serves the same rows, leases and HashKV.
//! - Our `etcdutl snapshot status` of etcd's files agrees with etcd
//!   3.5.1's on hash and revision.

mod common;
mod snapshot_support;

use std::path::Path;

use common::*;
use snapshot_support::*;

/// A quota small enough that one large put raises NOSPACE, and large
/// enough for the rest of the workload.
const QUOTA_BYTES: &str = "--quota-backend-bytes=1048576";

/// The workload of `snapshot_support::workload`, then a txn and a put
/// past the quota (which fails and raises NOSPACE). Returns the lease ID.
fn rich_workload(ctl: &Etcdctl, endpoint: &str) -> String {
    let lease = workload(ctl, endpoint);
    let txn =
        b"value(\"k1\") = \"v1b\"\n\nput k1 txn-success\ndel k3\nput k6 v6\n\nput never never\n\n";
    let out = ctl.run(endpoint, &["txn"], Some(txn));
    assert_eq!(out.code, 0, "txn: {out:?}");
    assert!(out.stdout.starts_with("SUCCESS"), "{out:?}");
    // etcdctl reads the value from stdin when the argument is missing.
    let big = "x".repeat(1_100_000);
    let out = ctl.run(endpoint, &["put", "big"], Some(big.as_bytes()));
    assert_ne!(out.code, 0, "a put past the quota fails: {}", out.stderr);
    assert!(
        out.stderr.contains("database space exceeded"),
        "{}",
        out.stderr
    );
    lease
}

/// The kvs of `etcdctl get "" --prefix -w json` (the header differs).
fn get_json(ctl: &Etcdctl, endpoint: &str) -> serde_json::Value {
    let out = ctl.run(endpoint, &["get", "", "--prefix", "-w", "json"], None);
    assert_eq!(out.code, 0, "get: {out:?}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("get -w json");
    json["kvs"].clone()
}

/// `etcdctl alarm list` lines without the member ID.
fn alarms(ctl: &Etcdctl, endpoint: &str) -> Vec<String> {
    let out = ctl.run(endpoint, &["alarm", "list"], None);
    assert_eq!(out.code, 0, "alarm list: {out:?}");
    out.stdout
        .lines()
        .map(|l| l.split_whitespace().last().unwrap_or(l).to_string())
        .collect()
}

fn copy_file(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_snapshots_restore_into_ours() {
    let tool = etcdutl();
    let ref_tool = reference_tool(Kind::Ref35, "etcdutl");
    for kind in [Kind::Ref35, Kind::Ref34] {
        let what = kind.label();
        let mut source = EtcdProcess::start(kind, &[QUOTA_BYTES]);
        let ctl = Etcdctl::reference(kind);
        let lease = rich_workload(&ctl, &source.endpoint());
        let mut client = connect(source.client_url()).await;
        let expected = dump(&mut client, false).await;
        // etcd 3.4/3.5 do not answer hash_revision (3.6's field): compare
        // the hash and the compaction revision at the current revision.
        let (hash, _, compacted) = hash_kv(&mut client, expected.0).await;
        let expected_hash = (hash, compacted);
        let expected_json = get_json(&ctl, &source.endpoint());
        assert_eq!(alarms(&ctl, &source.endpoint()), ["alarm:NOSPACE"]);
        let dir = temp_dir();
        let (snapshot, out) = save(&ctl, &source, dir.path(), "etcd.db");
        assert_eq!(out.code, 0, "{what}: snapshot save: {out:?}");

        // Status: the same hash and revision as etcd 3.5.1's etcdutl says.
        let status = |bin: &Path| {
            let out = ok(
                run(
                    bin,
                    &[
                        "snapshot",
                        "status",
                        &snapshot.display().to_string(),
                        "-w",
                        "json",
                    ],
                ),
                "snapshot status",
            );
            serde_json::from_str::<serde_json::Value>(&out.stdout).expect("status json")
        };
        let (ours, theirs) = (status(&tool), status(&ref_tool));
        assert_eq!(ours["hash"], theirs["hash"], "{what}: {ours} {theirs}");
        assert_eq!(ours["revision"], theirs["revision"], "{what}");
        assert_eq!(ours["totalSize"], theirs["totalSize"], "{what}");

        // The raw backend of the stopped member, as etcd restores it.
        source.terminate();
        let raw = dir.path().join("raw.db");
        copy_file(&source.data_dir().join("member/snap/db"), &raw);

        for (file, extra) in [(&snapshot, &[][..]), (&raw, &["--skip-hash-check"][..])] {
            let layout = Layout::new(1, "from-etcd");
            let data_dir = dir.path().join(format!(
                "restored-{}",
                file.file_stem().unwrap().to_string_lossy()
            ));
            layout.restore(&tool, 0, file, &data_dir, extra);
            let mut member = layout.spawn(Kind::Ours, 0, &data_dir);
            member.wait_serving();
            let mut restored = connect(member.url()).await;
            assert_eq!(
                dump(&mut restored, true).await,
                expected,
                "{what} {}: keys, revisions, leases",
                file.display()
            );
            let (hash, _, compacted) = hash_kv(&mut restored, expected.0).await;
            assert_eq!((hash, compacted), expected_hash, "{what}: HashKV");
            let endpoint = member.url();
            assert_eq!(
                get_json(&ctl, &endpoint),
                expected_json,
                "{what}: get -w json"
            );
            let leases = ctl.run(&endpoint, &["lease", "list"], None);
            assert!(leases.stdout.contains(&lease), "{what}: {leases:?}");
            assert_eq!(alarms(&ctl, &endpoint), ["alarm:NOSPACE"], "{what}: alarms");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_snapshots_restore_into_etcd() {
    let ours = EtcdProcess::start(Kind::Ours, &[QUOTA_BYTES]);
    let ctl35 = Etcdctl::reference(Kind::Ref35);
    let ctl34 = Etcdctl::reference(Kind::Ref34);
    let lease = rich_workload(&ctl35, &ours.endpoint());
    let mut client = connect(ours.client_url()).await;
    let expected = dump(&mut client, false).await;
    let (hash, _, compacted) = hash_kv(&mut client, expected.0).await;
    let expected_hash = (hash, compacted);
    let expected_json = get_json(&ctl35, &ours.endpoint());
    let dir = temp_dir();
    let ref35_tool = reference_tool(Kind::Ref35, "etcdutl");

    for (kind, ctl) in [(Kind::Ref35, &ctl35), (Kind::Ref34, &ctl34)] {
        let what = kind.label();
        let (snapshot, out) = save(ctl, &ours, dir.path(), &format!("ours-{}.db", kind.label()));
        assert_eq!(out.code, 0, "{what}: snapshot save: {out:?}");
        // etcd 3.5.1's etcdutl reads it (its bbolt opens it, its checks pass).
        let status = run(
            &ref35_tool,
            &[
                "snapshot",
                "status",
                &snapshot.display().to_string(),
                "-w",
                "json",
            ],
        );
        assert_eq!(status.code, 0, "{what}: etcd's snapshot status: {status:?}");
        let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        assert_eq!(status["revision"], expected.0, "{status}");

        // The real restore: etcdutl 3.5.1, or etcdctl 3.4.23 (ETCDCTL_API=3).
        let layout = Layout::new(1, "from-ours");
        let data_dir = dir
            .path()
            .join(format!("restored-{}", kind.label().replace(' ', "-")));
        let restore_tool = match kind {
            Kind::Ref34 => reference_tool(Kind::Ref34, "etcdctl"),
            _ => ref35_tool.clone(),
        };
        let args = layout.restore_args(0, &snapshot, &data_dir);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = std::process::Command::new(&restore_tool)
            .args(&args)
            .env("ETCDCTL_API", "3")
            .output()
            .expect("run the real restore");
        assert!(out.status.success(), "{what}: restore: {out:?}");

        let mut member = layout.spawn(kind, 0, &data_dir);
        member.wait_serving();
        let mut restored = connect(member.url()).await;
        assert_eq!(
            dump(&mut restored, true).await,
            expected,
            "{what}: keys, revisions, leases"
        );
        let (hash, _, compacted) = hash_kv(&mut restored, expected.0).await;
        assert_eq!((hash, compacted), expected_hash, "{what}: HashKV");
        let endpoint = member.url();
        assert_eq!(
            get_json(ctl, &endpoint),
            expected_json,
            "{what}: get -w json"
        );
        let leases = ctl.run(&endpoint, &["lease", "list"], None);
        assert!(leases.stdout.contains(&lease), "{what}: {leases:?}");
        assert_eq!(alarms(ctl, &endpoint), ["alarm:NOSPACE"], "{what}: alarms");
    }
}
