//! Auto compaction on our server, as etcd runs it (`--auto-compaction-mode`,
//! `--auto-compaction-retention`):
//! - revision mode keeps the last N revisions: with 30 writes and N = 10 the
//!   compaction settles at current − 10; a Range below it gets etcd's
//!   "required revision has been compacted", at it the value is there;
//!   HashKV reports the compact revision.
//! - periodic mode compacts the revision of one window ago: whatever it
//!   compacted was current at least one window (2 s) before the compaction
//!   was seen (a bound that only a bug can break, not a slow machine).
//! - on a 3-member cluster, per mode: only the leader compacts, every member
//!   applies the compaction (through raft), and after MoveLeader the new
//!   leader compacts while the old one stays quiet.
//!
//! Revision mode checks every 5 minutes in etcd; these tests shorten that
//! with etcd-rs's `--experimental-auto-compaction-check-interval=200ms`.
//! Periodic mode needs no knob: a 2 s window samples every 200 ms, as in etcd.
//! Every wait is bounded; the cluster tests run one at a time.

mod cluster_support;
mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use cluster_support::Cluster;
use common::client::{bounded, connect, must};
use common::{EtcdProcess, Kind};
use etcd_client::{Client, GetOptions};

const CHECK_INTERVAL: &str = "--experimental-auto-compaction-check-interval=200ms";
const COMPACTED: &str = "OutOfRange: etcdserver: mvcc: required revision has been compacted";
/// Bound on one client call.
/// How long a compaction the test waits for may take to show.
const COMPACTION_WAIT: Duration = Duration::from_secs(20);
/// The periodic window of these tests.
const WINDOW: Duration = Duration::from_secs(2);
/// Timer granularity allowed under a lower time bound.
const CLOCK_SLACK: Duration = Duration::from_millis(50);
const POLL: Duration = Duration::from_millis(100);

static HEAVY: Mutex<()> = Mutex::new(());

/// The cluster tests run one at a time.
fn heavy_lock() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Puts `key` and returns the revision it created.
async fn put(c: &mut Client, key: &str, value: String) -> i64 {
    let resp = must("put", c.put(key, value, None)).await;
    resp.header().expect("a header").revision()
}

/// The compact revision HashKV reports.
async fn compact_revision(c: &mut Client) -> i64 {
    must("hash_kv", c.hash_kv(0)).await.compact_version()
}

/// `key` as of `revision`: its value, or the error.
async fn get_at(c: &mut Client, key: &str, revision: i64) -> Result<String, String> {
    let options = GetOptions::new().with_revision(revision);
    let resp = bounded("get", c.get(key, Some(options))).await?;
    Ok(resp
        .kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
        .unwrap_or_default())
}

/// The `revision` field of every log line with message `msg`, in order.
fn logged_revisions(log: &str, msg: &str) -> Vec<i64> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["msg"] == msg)
        .filter_map(|v| v["revision"].as_i64())
        .collect()
}

fn log_lines_with<'a>(log: &'a str, msg: &str) -> Vec<&'a str> {
    let needle = format!("\"msg\":\"{msg}\"");
    log.lines().filter(|l| l.contains(&needle)).collect()
}

#[test]
fn revision_mode_keeps_the_last_n_revisions() {
    let process = EtcdProcess::start(
        Kind::Ours,
        &[
            "--auto-compaction-mode=revision",
            "--auto-compaction-retention=10",
            CHECK_INTERVAL,
        ],
    );
    let rt = runtime();
    let last = rt.block_on(async {
        let mut c = connect(&[process.client_url()]).await;
        let mut last = 0;
        for i in 0..30 {
            last = put(&mut c, "k", format!("v{i}")).await;
        }
        let want = last - 10;
        let deadline = Instant::now() + COMPACTION_WAIT;
        loop {
            let seen = compact_revision(&mut c).await;
            if seen == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "compact revision {seen}, not {want}, after {COMPACTION_WAIT:?}\n{}",
                process.log_tail()
            );
            tokio::time::sleep(POLL).await;
        }
        assert_eq!(get_at(&mut c, "k", want - 1).await, Err(COMPACTED.into()));
        for rev in want..=last {
            // Revision r holds the value of the put that made it.
            let value = format!("v{}", 29 - (last - rev));
            assert_eq!(get_at(&mut c, "k", rev).await, Ok(value), "at {rev}");
        }
        last
    });
    let log = process.log_contents();
    let started = logged_revisions(&log, "starting auto revision compaction");
    let completed = logged_revisions(&log, "completed auto revision compaction");
    assert_eq!(started, completed, "every compaction completed");
    assert!(
        completed.windows(2).all(|w| w[0] < w[1]) && completed.first().is_some_and(|&r| r >= 1),
        "compactions at increasing revisions: {completed:?}"
    );
    assert_eq!(completed.last(), Some(&(last - 10)));
    for line in log_lines_with(&log, "starting auto revision compaction") {
        assert!(
            line.contains("\"revision-compaction-retention\":10"),
            "{line}"
        );
    }
}

#[test]
fn periodic_mode_compacts_the_revision_of_one_window_ago() {
    let process = EtcdProcess::start(Kind::Ours, &["--auto-compaction-retention=2s"]);
    let rt = runtime();
    rt.block_on(async {
        let mut c = connect(&[process.client_url()]).await;
        // (revision, when the put making it was sent)
        let mut sent: Vec<(i64, Instant)> = Vec::new();
        let deadline = Instant::now() + COMPACTION_WAIT;
        // The first compaction, one window after start, is at the start
        // revision (1); write until a later one compacts a revision of ours.
        let (compacted, seen_at) = loop {
            let at = Instant::now();
            let rev = put(&mut c, "p", format!("{}", sent.len())).await;
            sent.push((rev, at));
            let compacted = compact_revision(&mut c).await;
            if compacted > 1 {
                break (compacted, Instant::now());
            }
            assert!(
                Instant::now() < deadline,
                "no compaction past revision 1 within {COMPACTION_WAIT:?}\n{}",
                process.log_tail()
            );
            tokio::time::sleep(POLL).await;
        };
        let written_at = sent
            .iter()
            .find(|(rev, _)| *rev == compacted)
            .map(|(_, at)| *at)
            .unwrap_or_else(|| panic!("revision {compacted} is not one of ours: {sent:?}"));
        let age = seen_at - written_at;
        assert!(
            age + CLOCK_SLACK >= WINDOW,
            "revision {compacted} was compacted {age:?} after it was written (window {WINDOW:?})"
        );
        assert_eq!(
            get_at(&mut c, "p", compacted - 1).await,
            Err(COMPACTED.into())
        );
        assert!(get_at(&mut c, "p", compacted).await.is_ok());
    });
    let log = process.log_contents();
    let completed = log_lines_with(&log, "completed auto periodic compaction");
    assert!(completed.len() >= 2, "{completed:?}");
    for line in completed {
        assert!(line.contains("\"compact-period\":\"2s\""), "{line}");
    }
}

/// Moves leadership from `from` to `to` and waits until every member agrees.
fn move_leader(cluster: &Cluster, rt: &tokio::runtime::Runtime, from: usize, to: usize) {
    let target = cluster.member_id(to);
    let url = cluster.client_url(from);
    rt.block_on(async {
        let mut c = connect(&[url]).await;
        must("move leader", c.move_leader(target)).await;
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cluster.wait_leader_among(&[0, 1, 2], Duration::from_secs(10)) {
            Ok(l) if l == to => return,
            Ok(l) => assert!(
                Instant::now() < deadline,
                "leadership went to m{l}, not m{to}"
            ),
            Err(e) => panic!("after MoveLeader to m{to}: {e}\n{}", cluster.all_logs()),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until every member's HashKV reports a compact revision `done` accepts.
fn wait_all_compacted(cluster: &Cluster, what: &str, done: impl Fn(i64) -> bool) -> Vec<i64> {
    let deadline = Instant::now() + COMPACTION_WAIT;
    loop {
        let seen: Vec<i64> = (0..3)
            .map(|i| cluster.hash_kv(i, 0).map_or(-2, |(_, compacted)| compacted))
            .collect();
        if seen.iter().all(|&c| done(c)) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: members' compact revisions {seen:?} after {COMPACTION_WAIT:?}\n{}",
            cluster.all_logs()
        );
        std::thread::sleep(POLL);
    }
}

/// Puts one key on member `i`; the revision it made.
fn put_on(cluster: &Cluster, rt: &tokio::runtime::Runtime, i: usize, n: usize) -> i64 {
    let url = cluster.client_url(i);
    rt.block_on(async {
        let mut c = connect(&[url]).await;
        put(&mut c, "c", format!("{n}")).await
    })
}

#[test]
fn revision_mode_on_a_cluster_follows_the_leader() {
    let _heavy = heavy_lock();
    let label = "autocompact_revision";
    let cluster = Cluster::start(
        label,
        3,
        &[
            "--auto-compaction-mode=revision",
            "--auto-compaction-retention=5",
            CHECK_INTERVAL,
        ],
    );
    let rt = runtime();
    let first = cluster
        .wait_leader_among(&[0, 1, 2], Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let second = (first + 1) % 3;
    let third = (first + 2) % 3;
    let url = cluster.client_url(first);
    let rev = rt.block_on(async {
        let mut c = connect(&[url]).await;
        let mut rev = 0;
        for n in 0..20 {
            rev = put(&mut c, "c", format!("{n}")).await;
        }
        rev
    });
    wait_all_compacted(&cluster, "before the move", |c| c == rev - 5);
    let starting = "starting auto revision compaction";
    assert!(!logged_revisions(&cluster.log_contents(first), starting).is_empty());
    for follower in [second, third] {
        assert!(
            logged_revisions(&cluster.log_contents(follower), starting).is_empty(),
            "follower m{follower} compacted:\n{}",
            cluster.log_contents(follower)
        );
    }

    move_leader(&cluster, &rt, first, second);
    let old_leader_lines = logged_revisions(&cluster.log_contents(first), starting).len();
    let mut rev = rev;
    for n in 0..10 {
        rev = put_on(&cluster, &rt, second, n);
    }
    wait_all_compacted(&cluster, "after the move", |c| c == rev - 5);
    let new_leader = logged_revisions(
        &cluster.log_contents(second),
        "completed auto revision compaction",
    );
    assert_eq!(
        new_leader.last(),
        Some(&(rev - 5)),
        "m{second} (new leader)"
    );
    assert_eq!(
        logged_revisions(&cluster.log_contents(first), starting).len(),
        old_leader_lines,
        "the old leader m{first} compacted after losing leadership"
    );
    assert!(logged_revisions(&cluster.log_contents(third), starting).is_empty());
}

#[test]
fn periodic_mode_on_a_cluster_follows_the_leader() {
    let _heavy = heavy_lock();
    let label = "autocompact_periodic";
    let cluster = Cluster::start(label, 3, &["--auto-compaction-retention=2s"]);
    let rt = runtime();
    let first = cluster
        .wait_leader_among(&[0, 1, 2], Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let second = (first + 1) % 3;
    let third = (first + 2) % 3;
    let starting = "starting auto periodic compaction";
    let completed = "completed auto periodic compaction";

    // Writes go on until every member applied a compaction past revision 1.
    let mut n = 0;
    let deadline = Instant::now() + COMPACTION_WAIT;
    let before = loop {
        put_on(&cluster, &rt, first, n);
        n += 1;
        let seen: Vec<i64> = (0..3)
            .map(|i| cluster.hash_kv(i, 0).map_or(-2, |(_, c)| c))
            .collect();
        if seen.iter().all(|&c| c > 1) {
            break *seen.iter().max().expect("three members");
        }
        assert!(
            Instant::now() < deadline,
            "{label}: compact revisions {seen:?}\n{}",
            cluster.all_logs()
        );
        std::thread::sleep(POLL);
    };
    for follower in [second, third] {
        assert!(logged_revisions(&cluster.log_contents(follower), starting).is_empty());
    }

    move_leader(&cluster, &rt, first, second);
    let old_leader_lines = logged_revisions(&cluster.log_contents(first), starting).len();
    // The new leader has sampled all along: it compacts at once, at the
    // revision of about one window ago.
    let deadline = Instant::now() + COMPACTION_WAIT;
    let by_new_leader = loop {
        put_on(&cluster, &rt, second, n);
        n += 1;
        let done = logged_revisions(&cluster.log_contents(second), completed);
        if let Some(&r) = done.iter().find(|&&r| r > before) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: the new leader m{second} did not compact past {before}\n{}",
            cluster.all_logs()
        );
        std::thread::sleep(POLL);
    };
    wait_all_compacted(&cluster, "after the move", |c| c >= by_new_leader);
    assert_eq!(
        logged_revisions(&cluster.log_contents(first), starting).len(),
        old_leader_lines,
        "the old leader m{first} compacted after losing leadership"
    );
    assert!(logged_revisions(&cluster.log_contents(third), starting).is_empty());
}
