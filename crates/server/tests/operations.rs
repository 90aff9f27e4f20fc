//! Operations as etcd users run them, compared with the real etcd 3.5.1:
//!
//! - the backend quota: a small `--quota-backend-bytes` fills, writes fail
//!   with "database space exceeded" and the NOSPACE alarm is raised; reads and
//!   deletes still work; the alarm survives a restart; after compaction,
//!   defragmentation and `alarm disarm` writes resume;
//! - defragmentation: the file shrinks, writes and reads issued during it all
//!   succeed (ours), and `defrag --cluster` on three members;
//! - `endpoint hashkv`, compaction and defrag outputs;
//! - corruption checks: a member whose backend was altered on disk is refused
//!   at start by `--experimental-initial-corrupt-check`, and named in a
//!   CORRUPT alarm by the leader's periodic check, after which writes fail.

mod cluster_support;
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_support::Cluster;
use common::{Differential, EtcdProcess, Etcdctl, Kind};

/// Values used to fill the quota.
const FILL_VALUE_BYTES: usize = 64 * 1024;
/// Puts tried before giving up on reaching the quota.
const FILL_PUTS_MAX: usize = 400;

/// Puts big values with etcdctl until one fails; returns its output.
fn fill_until_refused(ctl: &Etcdctl, endpoint: &str) -> common::Output {
    let value = "q".repeat(FILL_VALUE_BYTES);
    for i in 0..FILL_PUTS_MAX {
        let out = ctl.run(
            endpoint,
            &["put", &format!("fill/{i:04}")],
            Some(value.as_bytes()),
        );
        if out.code != 0 {
            return out;
        }
    }
    panic!("{endpoint}: {FILL_PUTS_MAX} puts of {FILL_VALUE_BYTES} bytes never hit the quota");
}

fn revision(ctl: &Etcdctl, endpoint: &str) -> i64 {
    let out = ctl.run(endpoint, &["endpoint", "status", "-w", "json"], None);
    assert_eq!(out.code, 0, "{out:?}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    json[0]["Status"]["header"]["revision"].as_i64().unwrap()
}

#[test]
fn quota_nospace_and_recovery_match_etcd() {
    let quota = (4 * 1024 * 1024).to_string();
    let mut d = Differential::start(
        Etcdctl::reference(Kind::Ref35),
        &["--quota-backend-bytes", &quota],
    );
    d.ok(&["put", "before", "1"]);
    d.ok(&["alarm", "list"]);

    let ctl = d.ctl.clone();
    for endpoint in [d.ours.endpoint(), d.reference.endpoint()] {
        let refused = fill_until_refused(&ctl, &endpoint);
        assert!(
            refused
                .stderr
                .contains("Error: etcdserver: mvcc: database space exceeded"),
            "{endpoint}: {refused:?}"
        );
    }
    // While NOSPACE is active: what adds data fails, reads and deletes work.
    d.ok(&["alarm", "list"]);
    d.err(&["put", "small", "x"]);
    d.err(&["lease", "grant", "60"]);
    d.err_in(&["txn"], "\nput small x\n\n\n");
    // A txn that only reads costs nothing. etcd 3.5.1 still refuses it once
    // the file is past the quota; later etcd releases (3.4.2x, 3.6) let it
    // through, as we do.
    let read_only = d
        .ctl
        .run(&d.ours.endpoint(), &["txn"], Some(b"\nget before\n\n\n"));
    assert_eq!(read_only.code, 0, "{read_only:?}");
    d.ok(&["get", "before", "--print-value-only"]);
    d.ok(&["del", "before"]);
    d.err(&["endpoint", "health"]);

    // The alarm is kept in the backend.
    d.ours.restart();
    d.reference.restart();
    d.ok(&["alarm", "list"]);
    d.err(&["put", "small", "x"]);

    // Free space, then disarm.
    for endpoint in [d.ours.endpoint(), d.reference.endpoint()] {
        let del = ctl.run(&endpoint, &["del", "fill/", "--prefix"], None);
        assert_eq!(del.code, 0, "{del:?}");
        let rev = revision(&ctl, &endpoint).to_string();
        let compact = ctl.run(&endpoint, &["compact", &rev, "--physical"], None);
        assert_eq!(compact.code, 0, "{compact:?}");
    }
    d.ok(&["defrag"]);
    d.err(&["put", "small", "x"]);
    d.ok(&["alarm", "disarm"]);
    d.ok(&["alarm", "list"]);
    d.ok(&["put", "after", "y"]);
    d.ok(&["get", "after", "--print-value-only"]);
    for endpoint in [d.ours.endpoint(), d.reference.endpoint()] {
        let grant = d.ctl.run(&endpoint, &["lease", "grant", "60"], None);
        assert_eq!(grant.code, 0, "{endpoint}: {grant:?}");
    }
    d.finish();
}

#[test]
fn defrag_serves_writes_and_reads_throughout() {
    let server = EtcdProcess::start(Kind::Ours, &[]);
    let ctl = Etcdctl::reference(Kind::Ref35);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = server.client_url();
    let (size_before, size_after, writes, reads) = runtime.block_on(async move {
        let mut client = etcd_client::Client::connect([url.clone()], None)
            .await
            .unwrap();
        // About 24 MB of history, two thirds of it deleted and compacted away.
        let value = vec![b'v'; 1024];
        for batch in 0..240 {
            let ops: Vec<etcd_client::TxnOp> = (0..100)
                .map(|i| {
                    etcd_client::TxnOp::put(
                        format!("k/{:06}", batch * 100 + i),
                        value.clone(),
                        None,
                    )
                })
                .collect();
            client
                .txn(etcd_client::Txn::new().and_then(ops))
                .await
                .unwrap();
        }
        client
            .delete(
                "k/000000",
                Some(etcd_client::DeleteOptions::new().with_range("k/016000")),
            )
            .await
            .unwrap();
        let rev = client
            .get("k/", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        client
            .compact(
                rev,
                Some(etcd_client::CompactionOptions::new().with_physical()),
            )
            .await
            .unwrap();
        let size_before = client.status().await.unwrap().db_size();

        // Writers and readers run while the member defragments.
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let reads = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for w in 0..4 {
            let mut client = client.clone();
            let (stop, writes, reads) = (stop.clone(), writes.clone(), reads.clone());
            tasks.push(tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut i = 0u64;
                while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
                    let key = format!("during/{w}/{i}");
                    client
                        .put(key.clone(), "x", None)
                        .await
                        .unwrap_or_else(|e| panic!("put {key} during defrag: {e}"));
                    writes.fetch_add(1, Ordering::Relaxed);
                    let got = client
                        .get(key.clone(), None)
                        .await
                        .unwrap_or_else(|e| panic!("get {key} during defrag: {e}"));
                    assert_eq!(got.kvs().len(), 1, "{key} missing right after its put");
                    reads.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        client.defragment().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::Release);
        for t in tasks {
            t.await.unwrap();
        }
        let size_after = client.status().await.unwrap().db_size();
        // Everything written before and during the defrag is there.
        let kept = client
            .get(
                "k/",
                Some(
                    etcd_client::GetOptions::new()
                        .with_prefix()
                        .with_count_only(),
                ),
            )
            .await
            .unwrap()
            .count();
        assert_eq!(kept, 8_000);
        let during = client
            .get(
                "during/",
                Some(
                    etcd_client::GetOptions::new()
                        .with_prefix()
                        .with_count_only(),
                ),
            )
            .await
            .unwrap()
            .count();
        assert_eq!(during as u64, writes.load(Ordering::Relaxed));
        (
            size_before,
            size_after,
            writes.load(Ordering::Relaxed),
            reads.load(Ordering::Relaxed),
        )
    });
    eprintln!(
        "defrag: {size_before} -> {size_after} bytes; {writes} writes and {reads} reads during it"
    );
    assert!(
        size_after * 2 < size_before,
        "{size_before} -> {size_after}"
    );
    assert!(writes > 0 && reads > 0);
    // The defragmented file is the one a restart opens.
    let mut server = server;
    server.restart();
    let out = ctl.run(
        &server.endpoint(),
        &["get", "k/", "--prefix", "--count-only", "-w", "fields"],
        None,
    );
    assert!(out.stdout.contains("\"Count\" : 8000"), "{out:?}");
}

#[test]
fn defrag_cluster_and_hashkv_on_three_members() {
    let cluster = Cluster::start("defrag-cluster", 3, &[]);
    let ctl = Etcdctl::reference(Kind::Ref35);
    let endpoint = cluster.endpoint(0);
    for i in 0..200 {
        let out = ctl.run(&endpoint, &["put", &format!("k{i}"), "v"], None);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let out = ctl.run(&endpoint, &["del", "k1", "--prefix"], None);
    assert_eq!(out.code, 0, "{out:?}");
    let out = ctl.run(&endpoint, &["defrag", "--cluster"], None);
    assert_eq!(out.code, 0, "{out:?}");
    let mut lines: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    lines.sort();
    let mut expected: Vec<String> = (0..3)
        .map(|i| {
            format!(
                "Finished defragmenting etcd member[{}]",
                cluster.client_url(i)
            )
        })
        .collect();
    expected.sort();
    assert_eq!(lines, expected);
    // Every member still holds the same data.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hashes: Vec<(u32, i64)> = (0..3).map(|i| cluster.hash_kv(i, 0).unwrap()).collect();
        if hashes.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "members disagree after defrag: {hashes:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = ctl.run(
        &endpoint,
        &["endpoint", "hashkv", "--cluster", "-w", "json"],
        None,
    );
    assert_eq!(out.code, 0, "{out:?}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let hashes: Vec<u64> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["HashKV"]["hash"].as_u64().unwrap())
        .collect();
    assert_eq!(hashes.len(), 3);
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
}

/// `endpoint hashkv` (every writer), `compaction`, `defrag`, `alarm` and
/// `move-leader` outputs as etcd's.
#[test]
fn hashkv_compaction_defrag_outputs_match_etcd() {
    for ctl in [
        Etcdctl::reference(Kind::Ref35),
        Etcdctl::reference(Kind::Ref34),
    ] {
        let mut d = Differential::start(ctl, &[]);
        d.ok(&["put", "a", "1"]);
        d.ok(&["put", "a", "2"]);
        d.ok(&["put", "b", "3"]);
        d.ok(&["del", "a"]);
        for format in ["simple", "json", "table", "fields"] {
            d.ok(&["endpoint", "hashkv", "-w", format]);
        }
        d.ok(&["endpoint", "hashkv", "--rev", "3", "-w", "json"]);
        d.ok(&["compaction", "3"]);
        d.err(&["endpoint", "hashkv", "--rev", "2"]);
        d.ok(&["endpoint", "hashkv", "--rev", "4", "-w", "fields"]);
        d.err(&["compaction", "3"]);
        d.err(&["compaction", "100"]);
        d.ok(&["compaction", "4", "--physical"]);
        d.ok(&["defrag"]);
        d.ok(&["defrag", "--cluster"]);
        d.ok(&["endpoint", "hashkv", "--cluster"]);
        d.ok(&["alarm", "list"]);
        d.ok(&["alarm", "disarm"]);
        // One member: it is the leader, a stranger is no transferee.
        d.err(&["move-leader", "1234"]);
        d.err(&["move-leader", "zz"]);
        d.finish();
    }
}

/// Changes the value stored in the newest row of a stopped member's backend,
/// as a disk fault would: the row still decodes, its key index entry is the
/// same, only the data differs.
fn corrupt_newest_row(data_dir: &std::path::Path) {
    use prost::Message;
    use redb::{ReadableDatabase, ReadableTable};
    let table: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("key");
    let db = redb::Database::open(data_dir.join("member/snap/db")).unwrap();
    let (key, value) = {
        let txn = db.begin_read().unwrap();
        let rows = txn.open_table(table).unwrap();
        let (key, value) = rows.last().unwrap().unwrap();
        (key.value().to_vec(), value.value().to_vec())
    };
    let mut kv = api::mvccpb::KeyValue::decode(value.as_slice()).unwrap();
    kv.value = b"flipped by a disk fault".to_vec();
    let txn = db.begin_write().unwrap();
    {
        let mut rows = txn.open_table(table).unwrap();
        rows.insert(key.as_slice(), kv.encode_to_vec().as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn corruption_is_refused_at_start_and_alarmed_by_the_leader() {
    let periodic = ["--experimental-corrupt-check-time=500ms"];
    let mut cluster = Cluster::start("corrupt", 3, &periodic);
    let ctl = Etcdctl::reference(Kind::Ref35);
    let endpoint = cluster.endpoint(0);
    for i in 0..20 {
        let out = ctl.run(&endpoint, &["put", &format!("k{i}"), "v"], None);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        let hashes: Vec<(u32, i64)> = (0..3).map(|i| cluster.hash_kv(i, 0).unwrap()).collect();
        if let Some(leader) = cluster.leader_among(&[0, 1, 2]) {
            if hashes.windows(2).all(|w| w[0] == w[1]) {
                break leader;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader or members disagree: {hashes:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let victim = (leader + 1) % 3;
    let victim_id = cluster.member_id(victim);
    cluster.terminate(victim);
    corrupt_newest_row(&cluster.data_dir(victim));

    // At start, the member compares its hash with its peers' and stops.
    cluster.set_extra_args(&["--experimental-initial-corrupt-check=true"]);
    cluster.spawn(victim);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = cluster.exited(victim) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "a corrupted member passed the initial check:\n{}",
            cluster.log_contents(victim)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    assert!(
        cluster.log_contents(victim).contains(&format!(
            "{victim_id:x} found data inconsistency with peers"
        )),
        "{}",
        cluster.log_contents(victim)
    );

    cluster.kill9(victim); // reaps the exited process

    // Without the start-up check it runs, and the leader's periodic check
    // names it in a CORRUPT alarm; then the cluster refuses writes.
    cluster.set_extra_args(&periodic);
    cluster.spawn(victim);
    let expected = format!("memberID:{victim_id} alarm:CORRUPT");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = ctl.run(&cluster.endpoint(leader), &["alarm", "list"], None);
        if out.stdout.contains(&expected) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no CORRUPT alarm for {victim_id:x}: {out:?}\n{}",
            cluster.log_contents(leader)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let refused = ctl.run(&cluster.endpoint(leader), &["put", "after", "x"], None);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("etcdserver: corrupt cluster"),
        "{refused:?}"
    );
}
