//! The way back to the real etcd: `etcdutl migrate --target-version 3.5`
//! turns a stopped member's data dir into etcd 3.5's files, and etcd 3.5.1
//! starts on it as the same member.
//!
//! - One member, then a 3-member cluster: our etcd, a workload (puts,
//!   deletes, a txn, a lease with 2 keys, a compaction), the documented
//!   procedure (downgrade enable 3.5 through the gateway, wait for cluster
//!   version 3.5.0, stop), our `etcdutl migrate` on each dir, the real etcd
//!   3.5.1 on the same dirs and flags: same member and cluster IDs, member
//!   list, keys (with their revisions and leases), revision, HashKV and
//!   compaction mark, and writes go on. The original is kept as
//!   `member.etcd-rs-original`; a second migrate leaves the etcd dir alone.
//! - The round trip: a 3-member etcd 3.5.1 cluster and a single etcd
//!   3.4.23 member, taken over by ours (a key written), downgraded,
//!   migrated, run by etcd 3.5.1 again.
//! - Refusals leave every file byte for byte as it was: no downgrade
//!   (cluster version 3.6), `--target-version 3.4`, a running member, a
//!   held lock.
//! - `etcdutl migrate` killed with SIGKILL at several points leaves either
//!   our untouched dir (our etcd starts on it and cleans up) or the whole
//!   conversion (etcd 3.5.1 starts on it); never one in between.
//! - Hand-made dirs of ours: a member without a raft snapshot (etcd 3.5.1
//!   replays its whole log), and a snapshot at cluster version 3.6.0 with
//!   nothing after it (refused by the conversion's own version check).

mod common;
mod snapshot_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use snapshot_support::{workload, Layout, Member};

/// Bound on the waits for a cluster version, a snapshot file, a follower.
const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);
const KEPT: &str = "member.etcd-rs-original";

fn ctl() -> Etcdctl {
    Etcdctl::reference(Kind::Ref35)
}

fn ok(ctl: &Etcdctl, endpoint: &str, args: &[&str]) -> String {
    let out = ctl.run(endpoint, args, None);
    assert_eq!(out.code, 0, "etcdctl {args:?}: {out:?}");
    out.stdout
}

fn json(ctl: &Etcdctl, endpoint: &str, args: &[&str]) -> serde_json::Value {
    let text = ok(ctl, endpoint, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}: {text}"))
}

/// The workload, then a txn; returns the lease ID (hex).
fn write_keys(endpoint: &str) -> String {
    let ctl = ctl();
    let lease = workload(&ctl, endpoint);
    let txn =
        b"value(\"k1\") = \"v1b\"\n\nput k1 txn-success\ndel k3\nput k6 v6\n\nput never never\n\n";
    let out = ctl.run(endpoint, &["txn"], Some(txn));
    assert!(
        out.code == 0 && out.stdout.starts_with("SUCCESS"),
        "txn: {out:?}"
    );
    lease
}

/// What a member serves, compared before and after the conversion.
#[derive(Debug, PartialEq)]
struct Served {
    cluster_id: u64,
    member_id: u64,
    /// (ID, name, peer URLs, client URLs), sorted.
    members: Vec<(u64, String, String, String)>,
    kvs: serde_json::Value,
    revision: i64,
    /// HashKV at `revision`: (hash, compact revision).
    hash: (u64, i64),
}

fn served(endpoint: &str) -> Served {
    let ctl = ctl();
    let status = json(&ctl, endpoint, &["endpoint", "status", "-w", "json"]);
    let header = &status[0]["Status"]["header"];
    let revision = header["revision"].as_i64().expect("revision");
    let list = json(&ctl, endpoint, &["member", "list", "-w", "json"]);
    let mut members: Vec<_> = list["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["ID"].as_u64().expect("ID"),
                m["name"].as_str().unwrap_or_default().to_string(),
                m["peerURLs"].to_string(),
                m["clientURLs"].to_string(),
            )
        })
        .collect();
    members.sort();
    let get = json(&ctl, endpoint, &["get", "", "--prefix", "-w", "json"]);
    Served {
        cluster_id: header["cluster_id"].as_u64().expect("cluster_id"),
        member_id: header["member_id"].as_u64().expect("member_id"),
        members,
        kvs: get["kvs"].clone(),
        revision,
        hash: hash_kv(endpoint, revision),
    }
}

/// HashKV at `rev`: (hash, compact revision) (etcd 3.5 has no hash_revision).
fn hash_kv(endpoint: &str, rev: i64) -> (u64, i64) {
    let rev = format!("--rev={rev}");
    let out = json(
        &ctl(),
        endpoint,
        &["endpoint", "hashkv", &rev, "-w", "json"],
    );
    let h = &out[0]["HashKV"];
    (
        h["hash"].as_u64().expect("hash"),
        h["compact_revision"].as_i64().unwrap_or(0),
    )
}

/// Starts the downgrade to 3.5 through the gateway and waits until every
/// member reports cluster version 3.5.0 and has written a raft snapshot.
fn downgrade_to_3_5(members: &[Member], data_dirs: &[PathBuf]) {
    let answer = http_request(
        members[0].client_port,
        "POST",
        "/v3/maintenance/downgrade",
        r#"{"action":"ENABLE","version":"3.5"}"#,
    )
    .expect("downgrade enable");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "downgrade enable: {answer}"
    );
    for (m, dir) in members.iter().zip(data_dirs) {
        wait_for(&format!("cluster version 3.5.0 on {}", m.url()), || {
            http_get(m.client_port, "/version")
                .is_some_and(|v| v.contains(r#""etcdcluster":"3.5.0""#))
        });
        wait_for(&format!("a raft snapshot in {}", dir.display()), || {
            snap_files(dir) > 0
        });
    }
}

fn snap_files(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("member/snap"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
                .count()
        })
        .unwrap_or(0)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "no {what} after {WAIT:?}");
        std::thread::sleep(POLL);
    }
}

/// SIGTERM, then a bounded wait for the exit.
fn stop(member: &mut Member) {
    let Some(mut child) = member.child.take() else {
        return;
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + STOP_TIMEOUT;
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not stop after SIGTERM", member.kind.label());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn migrate(data_dir: &Path, target: &str) -> Output {
    let dir = data_dir.display().to_string();
    run(
        &etcdutl(),
        &["migrate", "--data-dir", &dir, "--target-version", target],
    )
}

/// A cluster of `n` of our members on loopback with the workload written,
/// downgraded to 3.5, recorded (per member) and stopped.
struct Prepared {
    _dir: tempfile::TempDir,
    layout: Layout,
    data_dirs: Vec<PathBuf>,
    lease: String,
    before: Vec<Served>,
}

/// About 10 MB of keys in 10 txns (so that writing etcd's files takes long
/// enough for the kills to land in it).
fn write_bulk(endpoint: &str) {
    let value = "v".repeat(10_000);
    for t in 0..10 {
        let mut txn = String::from("\n\n");
        for k in 0..100 {
            txn.push_str(&format!("put bulk/{t:02}/{k:03} {value}\n"));
        }
        txn.push('\n');
        let out = ctl().run(endpoint, &["txn"], Some(txn.as_bytes()));
        assert!(
            out.code == 0 && out.stdout.starts_with("SUCCESS"),
            "bulk txn: {}",
            out.stderr
        );
    }
}

fn prepare(n: usize, label: &str) -> Prepared {
    prepare_with(n, label, false)
}

fn prepare_with(n: usize, label: &str, bulk: bool) -> Prepared {
    let dir = temp_dir();
    let layout = Layout::new(n, &format!("migrate-back-{label}-{}", std::process::id()));
    let data_dirs: Vec<PathBuf> = (0..n)
        .map(|i| dir.path().join(format!("m{i}.etcd")))
        .collect();
    let mut members = spawn_healthy(&layout, Kind::Ours, &data_dirs);
    let lease = write_keys(&members[0].url());
    if bulk {
        write_bulk(&members[0].url());
    }
    let before = downgrade_record_stop(&mut members, &data_dirs);
    Prepared {
        _dir: dir,
        layout,
        data_dirs,
        lease,
        before,
    }
}

/// `kind` on every dir of `layout`, healthy.
fn spawn_healthy(layout: &Layout, kind: Kind, data_dirs: &[PathBuf]) -> Vec<Member> {
    let mut members: Vec<Member> = data_dirs
        .iter()
        .enumerate()
        .map(|(i, d)| layout.spawn(kind, i, d))
        .collect();
    for m in &mut members {
        m.wait_healthy();
    }
    members
}

/// The documented way back: downgrade to 3.5; then what each member
/// serves, recorded; then every member stopped.
fn downgrade_record_stop(members: &mut [Member], data_dirs: &[PathBuf]) -> Vec<Served> {
    downgrade_to_3_5(members, data_dirs);
    let before: Vec<Served> = members.iter().map(|m| served(&m.url())).collect();
    for m in members.iter_mut() {
        stop(m);
    }
    before
}

/// The whole way in and back out: `n` members of the real etcd (`origin`)
/// with the workload, stopped; ours started on their dirs (the conversion)
/// and a key written; downgraded to 3.5, recorded and stopped. Ours must
/// have served etcd's members and cluster under etcd's IDs.
fn prepare_round_trip(origin: Kind, n: usize, label: &str) -> Prepared {
    let dir = temp_dir();
    let layout = Layout::new(n, &format!("round-trip-{label}-{}", std::process::id()));
    let data_dirs: Vec<PathBuf> = (0..n)
        .map(|i| dir.path().join(format!("m{i}.etcd")))
        .collect();
    let mut members = spawn_healthy(&layout, origin, &data_dirs);
    let lease = write_keys(&members[0].url());
    let born: Vec<Served> = members.iter().map(|m| served(&m.url())).collect();
    for m in &mut members {
        stop(m);
    }
    let mut members = spawn_healthy(&layout, Kind::Ours, &data_dirs);
    for (i, d) in data_dirs.iter().enumerate() {
        assert!(
            d.join("member.etcd-original").is_dir(),
            "member {i}: not converted from {}",
            origin.label()
        );
    }
    ok(&ctl(), &members[0].url(), &["put", "written", "by-etcd-rs"]);
    // Our leader raises etcd's cluster version to 3.6.0 soon after the
    // start; a downgrade is only accepted from there.
    for m in &members {
        wait_for(&format!("cluster version 3.6.0 on {}", m.url()), || {
            http_get(m.client_port, "/version")
                .is_some_and(|v| v.contains(r#""etcdcluster":"3.6.0""#))
        });
    }
    let before = downgrade_record_stop(&mut members, &data_dirs);
    for (i, (ours, etcds)) in before.iter().zip(&born).enumerate() {
        assert_eq!(
            (ours.cluster_id, ours.member_id, &ours.members),
            (etcds.cluster_id, etcds.member_id, &etcds.members),
            "member {i}: ours serves {}'s member under its IDs",
            origin.label()
        );
        assert_eq!(ours.revision, etcds.revision + 1, "member {i}");
    }
    Prepared {
        _dir: dir,
        layout,
        data_dirs,
        lease,
        before,
    }
}

/// Starts etcd 3.5.1 on every dir and checks it serves what ours did.
fn check_etcd_serves(p: &Prepared) -> Vec<Member> {
    let mut members: Vec<Member> = (0..p.data_dirs.len())
        .map(|i| p.layout.spawn(Kind::Ref35, i, &p.data_dirs[i]))
        .collect();
    for m in &mut members {
        m.wait_healthy();
    }
    show_start_log(&members[0]);
    for (i, m) in members.iter().enumerate() {
        let mut after = served(&m.url());
        // A follower may still be applying what the new leader committed.
        let deadline = Instant::now() + WAIT;
        while after.revision < p.before[i].revision && Instant::now() < deadline {
            std::thread::sleep(POLL);
            after = served(&m.url());
        }
        let before = &p.before[i];
        after.hash = hash_kv(&m.url(), before.revision);
        assert_eq!(after, *before, "member {i} under etcd 3.5.1");
        let ttl = ok(
            &ctl(),
            &m.url(),
            &["lease", "timetolive", &p.lease, "--keys"],
        );
        // etcd lists the attached keys in map order.
        assert!(
            ttl.contains("attached keys([lk1 lk2])") || ttl.contains("attached keys([lk2 lk1])"),
            "lease: {ttl}"
        );
    }
    // Writes go on, and every member agrees on them.
    let url = members[0].url();
    ok(&ctl(), &url, &["put", "after", "migrate"]);
    let rev = served(&url).revision;
    assert_eq!(rev, p.before[0].revision + 1);
    let want = hash_kv(&url, rev);
    for m in &members[1..] {
        wait_for(&format!("revision {rev} on {}", m.url()), || {
            served(&m.url()).revision >= rev
        });
        assert_eq!(hash_kv(&m.url(), rev), want, "{}", m.url());
    }
    members
}

/// What etcd logged at start about membership, versions and the replay
/// (printed with --nocapture).
fn show_start_log(m: &Member) {
    let log = std::fs::read_to_string(&m.log).unwrap_or_default();
    for line in log.lines().filter(|l| {
        [
            "member",
            "cluster version",
            "downgrade",
            "snapshot",
            "applied",
            "consistent",
        ]
        .iter()
        .any(|n| l.contains(n))
    }) {
        eprintln!(
            "  etcd 3.5.1: {}",
            line.chars().take(300).collect::<String>()
        );
    }
}

fn assert_migrated(out: &Output, data_dir: &Path) {
    assert_eq!(out.code, 0, "migrate {}: {out:?}", data_dir.display());
    assert!(data_dir.join(KEPT).join("wal").is_dir(), "{KEPT} kept");
    assert!(!data_dir.join("member.converting").exists());
}

#[test]
fn one_member_goes_back_to_etcd_3_5() {
    let p = prepare(1, "one");
    let d = &p.data_dirs[0];
    let out = migrate(d, "3.5");
    assert_migrated(&out, d);
    eprintln!("migrate: {}", out.stderr.trim());
    // A second migrate leaves etcd's dir alone, with a clear message.
    let converted = tree(d);
    let again = migrate(d, "3.5");
    assert_ne!(again.code, 0);
    assert!(
        again.stderr.contains("already in etcd's format"),
        "{again:?}"
    );
    assert_eq!(tree(d), converted);
    let mut members = check_etcd_serves(&p);
    for m in &mut members {
        stop(m);
    }
}

/// etcd's own upgrade procedure, across implementations and back: a
/// 3-member etcd 3.5.1 cluster and a single etcd 3.4.23 member are taken
/// over by ours, written to, downgraded, migrated, and run by etcd 3.5.1,
/// which serves what both wrote.
#[test]
fn etcd_members_taken_over_go_back_to_etcd_3_5() {
    for (origin, n, label) in [(Kind::Ref35, 3, "three-35"), (Kind::Ref34, 1, "one-34")] {
        let p = prepare_round_trip(origin, n, label);
        for d in &p.data_dirs {
            assert_migrated(&migrate(d, "3.5"), d);
            assert!(d.join("member.etcd-original").is_dir(), "still kept");
        }
        let mut members = check_etcd_serves(&p);
        let got = ok(&ctl(), &members[0].url(), &["get", "written"]);
        assert!(got.contains("by-etcd-rs"), "{label}: {got}");
        for m in &mut members {
            stop(m);
        }
    }
}

#[test]
fn three_members_go_back_to_etcd_3_5() {
    let p = prepare(3, "three");
    for d in &p.data_dirs {
        assert_migrated(&migrate(d, "3.5"), d);
    }
    let ids: Vec<u64> = p.before.iter().map(|s| s.member_id).collect();
    assert_eq!(ids.len(), 3);
    assert!(p.before.iter().all(|s| s.members == p.before[0].members));
    let mut members = check_etcd_serves(&p);
    for m in &mut members {
        stop(m);
    }
}

#[test]
fn refusals_leave_the_dir_as_it_was() {
    let dir = temp_dir();
    let layout = Layout::new(1, &format!("migrate-back-refuse-{}", std::process::id()));
    let d = dir.path().join("m0.etcd");
    let mut m = layout.spawn(Kind::Ours, 0, &d);
    m.wait_healthy();
    write_keys(&m.url());

    // A running member: its lock.
    let out = migrate(&d, "3.5");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("in use"), "{out:?}");
    stop(&mut m);

    let before = tree(&d);
    // No downgrade: the cluster version is 3.6.
    let out = migrate(&d, "3.5");
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("WAL contains newer entries")
            && out.stderr.contains("downgrade enable 3.5"),
        "{out:?}"
    );
    assert_eq!(tree(&d), before, "after the refusal without a downgrade");
    // etcd 3.4: refused (our cluster version never goes below 3.5).
    let out = migrate(&d, "3.4");
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains(r#"target version "3.4" not supported"#),
        "{out:?}"
    );
    assert_eq!(tree(&d), before, "after --target-version 3.4");
    // A lock held by someone else.
    let lock = std::fs::File::open(d.join("member/lock")).expect("open the lock");
    lock.try_lock().expect("take the lock");
    let out = migrate(&d, "3.5");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("in use"), "{out:?}");
    drop(lock);
    assert_eq!(tree(&d), before, "after the held lock");
}

/// When a kill lands.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// This long after the start.
    After(Duration),
    /// This long after `member.converting` appeared (the writing phase;
    /// reading our files comes first and takes most of a run).
    AfterStaging(Duration),
}

/// Runs `etcdutl migrate` on `data_dir` and SIGKILLs it at `when`; true
/// when it had finished by then.
fn migrate_killed(data_dir: &Path, when: Kill) -> bool {
    let mut child = Command::new(etcdutl())
        .args(["migrate", "--data-dir", &data_dir.display().to_string()])
        .args(["--target-version", "3.5"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run etcdutl");
    match when {
        Kill::After(delay) => std::thread::sleep(delay),
        Kill::AfterStaging(delay) => {
            let staging = data_dir.join("member.converting");
            let deadline = Instant::now() + WAIT;
            while !staging.exists()
                && child.try_wait().ok().flatten().is_none()
                && Instant::now() < deadline
            {
                std::hint::spin_loop();
            }
            std::thread::sleep(delay);
        }
    }
    let finished = child.try_wait().ok().flatten().is_some();
    let _ = child.kill();
    let _ = child.wait();
    finished
}

#[test]
fn a_killed_migrate_leaves_ours_or_etcds_never_half() {
    let p = prepare_with(1, "kill", true);
    let golden = &p.data_dirs[0];
    // How long a whole run takes here (the median of three): the files are
    // written in its last few milliseconds, so the kills are densest there.
    let scratch = temp_dir();
    let mut runs: Vec<Duration> = (0..3)
        .map(|n| {
            let timed = scratch.path().join(format!("timed{n}.etcd"));
            copy_dir(golden, &timed);
            let started = Instant::now();
            assert_migrated(&migrate(&timed, "3.5"), &timed);
            started.elapsed()
        })
        .collect();
    runs.sort();
    let whole = runs[1];
    eprintln!("whole migrates took {runs:?}");

    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let whole_us = whole.as_micros() as u64;
    let mut kills: Vec<Kill> = [0, 10, 25, 50, 75, 90, 100, 120]
        .iter()
        .map(|pct| Kill::After(Duration::from_micros(whole_us * pct / 100)))
        .collect();
    kills.extend(
        [
            0u64, 200, 500, 1_000, 2_000, 4_000, 7_000, 10_000, 15_000, 25_000, 40_000,
        ]
        .iter()
        .map(|us| Kill::AfterStaging(Duration::from_micros(*us))),
    );
    for (n, delay) in kills.iter().enumerate() {
        let d = scratch.path().join(format!("k{n}.etcd"));
        copy_dir(golden, &d);
        let finished = migrate_killed(&d, *delay);
        let member = d.join("member").is_dir();
        let staging = d.join("member.converting").exists();
        // Written last into the staging dir: the new dir is whole.
        let marked = d.join("member.converting/CONVERTED").exists();
        let kept = d.join(KEPT).exists();
        let outcome = match (member, staging && !marked, kept) {
            (true, false, true) if !staging => "converted",
            (true, false, false) if !staging => "ours",
            (true, true, false) => "ours, member.converting left",
            // Killed after the new dir was marked whole (before or between
            // the renames): the next migrate finishes the swap (so would
            // our etcd, which then converts it back into ours).
            _ => {
                let out = migrate(&d, "3.5");
                assert_eq!(out.code, 0, "finishing after a kill at {delay:?}: {out:?}");
                if marked {
                    "marked whole, finished by the next migrate"
                } else {
                    "between the renames, finished by the next migrate"
                }
            }
        };
        *outcomes.entry(outcome).or_default() += 1;
        eprintln!("killed at {delay:?} (finished: {finished}): {outcome}");
        let ours = outcome.starts_with("ours");
        let kind = if ours { Kind::Ours } else { Kind::Ref35 };
        let mut m = p.layout.spawn(kind, 0, &d);
        m.wait_healthy();
        let kvs = json(&ctl(), &m.url(), &["get", "", "--prefix", "-w", "json"])["kvs"].clone();
        assert_eq!(
            kvs,
            p.before[0].kvs,
            "{} on the dir killed at {delay:?}",
            kind.label()
        );
        stop(&mut m);
        if ours {
            assert!(!d.join("member.converting").exists(), "our etcd cleaned up");
            assert!(!d.join(KEPT).exists());
        }
    }
    eprintln!("outcomes: {outcomes:?}");
}

/// A member whose log was never cut by a snapshot (a data dir of ours
/// written by hand: the founding conf change, the member's attributes,
/// cluster version 3.5.0, a put): etcd 3.5.1 starts from a WAL holding the
/// whole log from index 1 and no snap file, rebuilding its v2 store by
/// replaying it.
#[test]
fn a_member_without_a_snapshot_goes_back_from_its_whole_log() {
    use api::etcdserverpb::{
        Attributes, ClusterMemberAttrSetRequest, ClusterVersionSetRequest, InternalRaftRequest,
        Member as PbMember, PutRequest, WalMetadata,
    };
    use prost::Message;
    use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType, HardState};

    let dir = temp_dir();
    let layout = Layout::new(1, "migrate-back-no-snapshot");
    let data_dir = dir.path().join("m0.etcd");
    let member = data_dir.join("member");
    std::fs::create_dir_all(member.join("snap")).unwrap();
    let (id, cluster_id) = (0x1234_5678_9abc_def0u64, 0x0fed_cba9_8765_4321u64);
    let (_, peer, _, client_port) = layout.members[0].clone();
    let client = format!("http://127.0.0.1:{client_port}");

    let normal = |index: u64, req: InternalRaftRequest| {
        let mut e = Entry {
            term: 2,
            index,
            data: req.encode_to_vec().into(),
            ..Default::default()
        };
        e.set_entry_type(EntryType::EntryNormal);
        e
    };
    let mut cc = ConfChange {
        id: 0,
        node_id: id,
        context: PbMember {
            id,
            name: "m0".into(),
            peer_ur_ls: vec![peer.clone()],
            client_ur_ls: vec![],
            is_learner: false,
        }
        .encode_to_vec()
        .into(),
        ..Default::default()
    };
    cc.set_change_type(ConfChangeType::AddNode);
    let mut founding = Entry {
        term: 1,
        index: 1,
        data: protobuf::Message::write_to_bytes(&cc).unwrap().into(),
        ..Default::default()
    };
    founding.set_entry_type(EntryType::EntryConfChange);
    let mut empty = Entry {
        term: 2,
        index: 2,
        ..Default::default()
    };
    empty.set_entry_type(EntryType::EntryNormal);
    let put = PutRequest {
        key: b"fixture".to_vec(),
        value: b"whole-log".to_vec(),
        ..Default::default()
    };
    let entries = vec![
        founding,
        empty,
        normal(
            3,
            InternalRaftRequest {
                id: 3,
                cluster_member_attr_set: Some(ClusterMemberAttrSetRequest {
                    member_id: id,
                    member_attributes: Some(Attributes {
                        name: "m0".into(),
                        client_urls: vec![client.clone()],
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            },
        ),
        normal(
            4,
            InternalRaftRequest {
                id: 4,
                cluster_version_set: Some(ClusterVersionSetRequest {
                    ver: "3.5.0".into(),
                }),
                ..Default::default()
            },
        ),
        normal(
            5,
            InternalRaftRequest {
                id: 5,
                put: Some(put.clone()),
                ..Default::default()
            },
        ),
    ];
    let metadata = WalMetadata {
        node_id: id,
        cluster_id,
    }
    .encode_to_vec();
    let mut log = wal::Wal::create(&member.join("wal"), &metadata).unwrap();
    let hs = HardState {
        term: 2,
        vote: id,
        commit: 5,
        ..Default::default()
    };
    log.save(Some(&hs), &entries).unwrap();
    drop(log);
    let store = mvcc::Store::open(&member.join("snap/db"), mvcc::StoreOptions::default()).unwrap();
    let mut wb = store.write_batch().unwrap();
    wb.put(&put).unwrap();
    wb.set_consistent_index(5, 2);
    wb.commit(true).unwrap();
    drop(store);

    let out = migrate(&data_dir, "3.5");
    assert_migrated(&out, &data_dir);
    assert_eq!(snap_files(&data_dir), 0, "no snap file without a snapshot");

    let mut m = layout.spawn(Kind::Ref35, 0, &data_dir);
    m.wait_healthy();
    show_start_log(&m);
    let s = served(&m.url());
    assert_eq!((s.member_id, s.cluster_id, s.revision), (id, cluster_id, 2));
    assert_eq!(s.members.len(), 1, "{:?}", s.members);
    assert_eq!(s.members[0].1, "m0");
    let got = ok(&ctl(), &m.url(), &["get", "fixture", "--print-value-only"]);
    assert_eq!(got.trim(), "whole-log");
    ok(&ctl(), &m.url(), &["put", "after", "migrate"]);
    stop(&mut m);
}

/// A member whose newest raft snapshot holds cluster version 3.6.0 and whose
/// log after it sets no version (etcd 3.6's WAL check passes): the
/// conversion's own check refuses it, naming the downgrade, and leaves
/// every file as it was.
#[test]
fn a_snapshot_at_cluster_version_3_6_is_refused() {
    use api::etcdserverpb::{Member as PbMember, WalMetadata};
    use prost::Message;
    use raft::eraftpb::{HardState, Snapshot};

    let dir = temp_dir();
    let data_dir = dir.path().join("m0.etcd");
    let member = data_dir.join("member");
    std::fs::create_dir_all(member.join("snap")).unwrap();
    let id = 0x42u64;
    let data = datadir::membership::Cluster::snapshot_data(
        vec![PbMember {
            id,
            name: "m0".into(),
            peer_ur_ls: vec!["http://127.0.0.1:2380".into()],
            ..Default::default()
        }],
        vec![],
        Some("3.6.0".into()),
    );
    let mut snapshot = Snapshot {
        data: data.into(),
        ..Default::default()
    };
    snapshot.mut_metadata().index = 5;
    snapshot.mut_metadata().term = 2;
    snapshot.mut_metadata().mut_conf_state().voters = vec![id];
    wal::Snapshotter::new(&member.join("snap"))
        .save(&snapshot)
        .unwrap();
    let metadata = WalMetadata {
        node_id: id,
        cluster_id: 7,
    }
    .encode_to_vec();
    let mut log = wal::Wal::create(&member.join("wal"), &metadata).unwrap();
    log.save_snapshot(wal::WalSnapshot { index: 5, term: 2 })
        .unwrap();
    let hs = HardState {
        term: 2,
        vote: id,
        commit: 5,
        ..Default::default()
    };
    log.save(Some(&hs), &[]).unwrap();
    drop(log);
    let store = mvcc::Store::open(&member.join("snap/db"), mvcc::StoreOptions::default()).unwrap();
    let mut wb = store.write_batch().unwrap();
    wb.set_consistent_index(5, 2);
    wb.commit(true).unwrap();
    drop(store);

    let before = tree(&data_dir);
    let out = migrate(&data_dir, "3.5");
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("the cluster version is 3.6")
            && out.stderr.contains("etcdctl downgrade enable 3.5"),
        "{out:?}"
    );
    assert_eq!(tree(&data_dir), before);
}
