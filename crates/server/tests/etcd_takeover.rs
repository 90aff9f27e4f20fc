//! Our `etcd` started on stopped real etcd members' data dirs, with the
//! flags the real members had, as etcd's upgrade guide swaps binaries:
//!
//! - one member of etcd 3.5.1 and one of 3.4.23 (snapshots taken, entries
//!   after the last one): the same member and cluster IDs, keys with their
//!   revisions and versions, leases, compaction mark and HashKV, writes
//!   continue; the original files are kept byte for byte;
//! - a three-member etcd 3.5.1 cluster stopped as a whole and restarted by
//!   ours: the same members, data and HashKV on every member;
//! - kill -9 at many points of the conversion: afterwards the dir holds the
//!   untouched original or the finished conversion, and starts;
//! - a dir we cannot read (a damaged backend or WAL record, a running etcd)
//!   is refused and left byte for byte as it was.

mod cluster_support;
mod common;
mod snapshot_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use snapshot_support::{workload, CALL_TIMEOUT};

/// Small, so that etcd has taken snapshots and holds entries after the last.
const SNAPSHOT_COUNT: &str = "--snapshot-count=50";
/// Keys written after the workload (more than two snapshots' worth).
const MORE_KEYS: usize = 130;

fn more_keys(ctl: &Etcdctl, endpoint: &str) {
    for i in 0..MORE_KEYS {
        let out = ctl.run(
            endpoint,
            &["put", &format!("more/{i:03}"), &format!("v{i}")],
            None,
        );
        assert_eq!(out.code, 0, "put: {out:?}");
    }
}

/// What a member serves, to compare before and after.
#[derive(Debug, PartialEq)]
struct Served {
    kvs: serde_json::Value,
    revision: i64,
    /// ID and whether a learner.
    member_ids: Vec<(u64, bool)>,
    cluster_id: u64,
    hash: (u32, i64),
    leases: String,
}

fn served(ctl: &Etcdctl, endpoint: &str) -> Served {
    let get = ctl.run(endpoint, &["get", "", "--prefix", "-w", "json"], None);
    assert_eq!(get.code, 0, "get: {get:?}");
    let get: serde_json::Value = serde_json::from_str(&get.stdout).unwrap();
    let revision = get["header"]["revision"].as_i64().unwrap();
    let list = ctl.run(endpoint, &["member", "list", "-w", "json"], None);
    let list: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let mut member_ids: Vec<(u64, bool)> = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["ID"].as_u64().unwrap(),
                m["isLearner"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    member_ids.sort_unstable();
    let hash = ctl.run(
        endpoint,
        &[
            "endpoint",
            "hashkv",
            "-w",
            "json",
            &format!("--rev={revision}"),
        ],
        None,
    );
    let hash: serde_json::Value = serde_json::from_str(&hash.stdout).expect("hashkv json");
    let hash = &hash[0]["HashKV"];
    let leases = ctl.run(endpoint, &["lease", "list"], None).stdout;
    Served {
        kvs: get["kvs"].clone(),
        revision,
        member_ids,
        cluster_id: list["header"]["cluster_id"].as_u64().unwrap(),
        hash: (
            hash["hash"].as_u64().unwrap() as u32,
            hash["compact_revision"].as_i64().unwrap_or(0),
        ),
        leases,
    }
}

/// A readable snap file newer than any the WAL records (as a crash between
/// writing a snap file and its WAL record leaves): etcd starts from an
/// older one, and so must the conversion, which reads the newest first.
fn add_a_snapshot_the_wal_does_not_know(snap_dir: &Path) {
    let newest = etcdfmt::snap::snap_names(snap_dir)
        .expect("list etcd's snap files")
        .into_iter()
        .next()
        .expect("etcd took no snapshot");
    let mut decoy =
        etcdfmt::snap::read_snap_file(&snap_dir.join(newest)).expect("read etcd's snap file");
    decoy.metadata.index += 1_000;
    etcdfmt::snap::write_snap_file(snap_dir, &decoy).expect("write a snap file");
}

#[test]
fn one_member_of_etcd_35_and_34_is_taken_over() {
    for kind in [Kind::Ref35, Kind::Ref34] {
        let mut process = EtcdProcess::start(kind, &[SNAPSHOT_COUNT]);
        let ctl = Etcdctl::reference(kind);
        let endpoint = process.endpoint();
        workload(&ctl, &endpoint);
        more_keys(&ctl, &endpoint);
        // A membership change after etcd's last snapshot, then writes
        // after it: the conversion folds it into our snapshot.
        let learner_url = format!("http://127.0.0.1:{}", free_port());
        let add = ctl.run(
            &endpoint,
            &[
                "member",
                "add",
                "never-started",
                &format!("--peer-urls={learner_url}"),
                "--learner",
            ],
            None,
        );
        assert_eq!(add.code, 0, "{}: member add: {add:?}", kind.label());
        for i in 0..3 {
            let put = ctl.run(&endpoint, &["put", &format!("late/{i}"), "v"], None);
            assert_eq!(put.code, 0, "{put:?}");
        }
        let before = served(&ctl, &endpoint);
        assert_eq!(before.member_ids.len(), 2, "{:?}", before.member_ids);
        process.terminate();
        let data = process.data_dir();
        add_a_snapshot_the_wal_does_not_know(&data.join("member/snap"));
        let original = tree(&data.join("member"));

        process.set_kind(Kind::Ours);
        process.restart();
        assert_eq!(served(&ctl, &endpoint), before, "{}", kind.label());
        let log = process.log_contents();
        assert!(
            log.contains("converted an etcd data dir"),
            "{}",
            process.log_tail()
        );
        // The applied log was folded into the snapshot, not carried.
        let folded: u64 = log
            .split("\"folded-entries\":")
            .nth(1)
            .and_then(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .unwrap_or_else(|| {
                panic!(
                    "no folded-entries in the log: {:?}",
                    log.lines()
                        .filter(|l| l.contains("converted"))
                        .collect::<Vec<_>>()
                )
            });
        assert!(folded > 0, "{}: nothing folded", kind.label());
        assert_eq!(
            tree(&data.join("member.etcd-original")),
            original,
            "{}: the original files are kept as they were",
            kind.label()
        );
        let put = ctl.run(&endpoint, &["put", "after", "takeover"], None);
        assert_eq!(put.code, 0, "{put:?}");
        let after = served(&ctl, &endpoint);
        assert_eq!(after.revision, before.revision + 1);

        // A second start is an ordinary restart of our own member.
        process.restart();
        assert_eq!(served(&ctl, &endpoint), after, "{}", kind.label());
    }
}

#[test]
fn a_three_member_etcd_cluster_is_taken_over() {
    let mut cluster =
        cluster_support::Cluster::start_of(Kind::Ref35, "takeover", 3, &[SNAPSHOT_COUNT]);
    let ctl = Etcdctl::reference(Kind::Ref35);
    let endpoint = cluster.endpoint(0);
    workload(&ctl, &endpoint);
    more_keys(&ctl, &endpoint);
    let before: Vec<Served> = (0..3).map(|i| served(&ctl, &cluster.endpoint(i))).collect();
    assert!(before.windows(2).all(|w| w[0] == w[1]), "{before:?}");
    for i in 0..3 {
        cluster.terminate(i);
    }
    cluster.set_kind(Kind::Ours);
    for i in 0..3 {
        cluster.spawn(i);
    }
    cluster
        .wait_all_healthy(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("ours on etcd's dirs: {e}"));
    for i in 0..3 {
        assert_eq!(served(&ctl, &cluster.endpoint(i)), before[0], "member {i}");
    }
    let put = ctl.run(&cluster.endpoint(1), &["put", "after", "takeover"], None);
    assert_eq!(put.code, 0, "{put:?}");
    let deadline = Instant::now() + CALL_TIMEOUT;
    loop {
        let now: Vec<Served> = (0..3).map(|i| served(&ctl, &cluster.endpoint(i))).collect();
        if now.windows(2).all(|w| w[0] == w[1]) {
            assert_eq!(now[0].revision, before[0].revision + 1);
            break;
        }
        assert!(Instant::now() < deadline, "members disagree: {now:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Our etcd on `data_dir` with the flags `name`'s single-member cluster had.
fn our_etcd(data_dir: &Path, name: &str, client: u16, peer: u16) -> Command {
    let mut cmd = Command::new(Kind::Ours.etcd_bin());
    let client = format!("http://127.0.0.1:{client}");
    let peer = format!("http://127.0.0.1:{peer}");
    cmd.args([
        format!("--name={name}"),
        format!("--data-dir={}", data_dir.display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster={name}={peer}"),
        "--initial-cluster-token=etcd-rs-test".to_string(),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    cmd
}

/// A stopped etcd 3.5.1 member with snapshots; its served data and process.
fn stopped_etcd_member() -> (EtcdProcess, Served) {
    let mut process = EtcdProcess::start(Kind::Ref35, &[SNAPSHOT_COUNT]);
    let ctl = Etcdctl::reference(Kind::Ref35);
    workload(&ctl, &process.endpoint());
    more_keys(&ctl, &process.endpoint());
    let before = served(&ctl, &process.endpoint());
    process.terminate();
    (process, before)
}

#[test]
fn kill_9_during_the_conversion_leaves_the_original_or_the_conversion() {
    let (source, before) = stopped_etcd_member();
    let original = tree(&source.data_dir().join("member"));
    let scratch = temp_dir();
    let ctl = Etcdctl::reference(Kind::Ref35);
    let delays_ms = [0u64, 1, 2, 4, 7, 10, 15, 20, 30, 45, 70, 100];
    let mut outcomes = BTreeMap::new();
    for (n, delay) in delays_ms.iter().enumerate() {
        let data = scratch.path().join(format!("d{n}"));
        copy_dir(&source.data_dir(), &data);
        let (client, peer) = (free_port(), free_port());
        let mut child = our_etcd(&data, source.name(), client, peer)
            .spawn()
            .expect("start ours");
        std::thread::sleep(Duration::from_millis(*delay));
        let _ = child.kill();
        let _ = child.wait();
        // Either untouched (maybe with a cut-short staging dir) or finished.
        let state = if data.join("member.etcd-original").exists() {
            assert_eq!(
                tree(&data.join("member.etcd-original")),
                original,
                "delay {delay}"
            );
            "converted"
        } else if data.join("member").exists() {
            assert_eq!(
                tree(&data.join("member")),
                original,
                "delay {delay}: untouched"
            );
            "untouched"
        } else {
            // Between the two renames: the staging dir is whole.
            assert!(
                data.join("member.converting").exists(),
                "delay {delay}: nothing left"
            );
            "between renames"
        };
        *outcomes.entry(state).or_insert(0) += 1;

        // Whatever the state, the next start serves the same data. On new
        // ports: the killed one's may have been taken by another test since.
        let (client, peer) = (free_port(), free_port());
        let mut child = our_etcd(&data, source.name(), client, peer)
            .spawn()
            .expect("start ours again");
        let endpoint = format!("127.0.0.1:{client}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !http_get(client, "/health").is_some_and(|r| r.contains(r#""health":"true""#)) {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut err);
                }
                panic!(
                    "delay {delay}: ours exited with {status} after the kill: {}",
                    tail(&err, 8)
                );
            }
            assert!(Instant::now() < deadline, "delay {delay}: not healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(served(&ctl, &endpoint), before, "delay {delay}");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            tree(&data.join("member.etcd-original")),
            original,
            "delay {delay}: kept"
        );
    }
    eprintln!("kill -9 outcomes: {outcomes:?}");
}

/// What is wrong with a copy of a member dir, and how to make it so.
type Damage = (&'static str, fn(&Path));

#[test]
fn what_cannot_be_read_is_refused_and_left_as_it_was() {
    let (source, _) = stopped_etcd_member();
    let scratch = temp_dir();
    let damage: [Damage; 3] = [
        ("a truncated backend", |member| {
            let db = member.join("snap/db");
            let len = std::fs::metadata(&db).unwrap().len();
            let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
            f.set_len(len / 3).unwrap();
        }),
        ("a corrupt WAL record", |member| {
            let wal = std::fs::read_dir(member.join("wal"))
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "wal"))
                .unwrap();
            let mut bytes = std::fs::read(&wal).unwrap();
            bytes[200] ^= 0xFF;
            std::fs::write(&wal, bytes).unwrap();
        }),
        ("a bucket etcd never writes", |member| {
            // A bbolt file of ours with an extra bucket, in place of etcd's.
            struct Rows;
            impl etcdfmt::bbolt::RowSource for Rows {
                fn rows(
                    &mut self,
                    f: &mut dyn FnMut(&[u8], &[u8], &[u8]) -> std::io::Result<()>,
                ) -> std::io::Result<()> {
                    f(b"meta", b"consistent_index", &9u64.to_be_bytes())
                }
            }
            let db = member.join("snap/db");
            std::fs::remove_file(&db).unwrap();
            etcdfmt::bbolt::write_file(&db, &[b"future", b"key", b"meta"], 4096, &mut Rows)
                .unwrap();
        }),
    ];
    for (n, (what, damage)) in damage.into_iter().enumerate() {
        let data = scratch.path().join(format!("d{n}"));
        copy_dir(&source.data_dir(), &data);
        damage(&data.join("member"));
        let before = tree(&data);
        let out = run_bounded(
            our_etcd(&data, source.name(), free_port(), free_port()),
            None,
            TOOL_TIMEOUT,
            "ours on a damaged etcd dir",
        );
        assert_ne!(out.code, 0, "{what}: ours started");
        assert!(
            out.stderr.contains("cannot convert the etcd data dir"),
            "{what}: {}",
            tail(&out.stderr, 5)
        );
        assert_eq!(tree(&data), before, "{what}: the dir is left as it was");
    }

    // A WAL kept outside the member dir (etcd's --wal-dir): refused, both
    // dirs left as they were.
    let data = scratch.path().join("wal-elsewhere");
    copy_dir(&source.data_dir(), &data);
    let wal_dir = scratch.path().join("etcd-wal");
    std::fs::rename(data.join("member/wal"), &wal_dir).expect("move the WAL out");
    let before = (tree(&data), tree(&wal_dir));
    let mut ours = our_etcd(&data, source.name(), free_port(), free_port());
    ours.arg(format!("--wal-dir={}", wal_dir.display()));
    let out = run_bounded(ours, None, TOOL_TIMEOUT, "ours with etcd's --wal-dir");
    assert_ne!(out.code, 0, "ours started with the WAL elsewhere");
    assert!(
        out.stderr.contains("--wal-dir") && out.stderr.contains("not supported"),
        "{}",
        tail(&out.stderr, 5)
    );
    assert_eq!((tree(&data), tree(&wal_dir)), before);

    // A running etcd holds its WAL: refused, nothing created beside it.
    let mut running = EtcdProcess::start(Kind::Ref35, &[]);
    let out = run_bounded(
        our_etcd(
            &running.data_dir(),
            running.name(),
            free_port(),
            free_port(),
        ),
        None,
        TOOL_TIMEOUT,
        "ours on a running etcd's dir",
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("etcd is still running"),
        "{}",
        tail(&out.stderr, 5)
    );
    let names: Vec<PathBuf> = std::fs::read_dir(running.data_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(names, [running.data_dir().join("member")]);
    running.terminate();
}
