//! Multi-member cluster tests: several of our `etcd` processes form one cluster
//! on loopback (harness: `cluster_support`), with their peer traffic through a
//! fault-injecting proxy.
//!
//! - membership as the real etcdctl 3.5.1 sees it (`member list`, `endpoint
//!   status/health --cluster`), writes on every member read back linearizably
//!   on every member, serializable reads converging;
//! - kill -9 of the leader under concurrent write load: a new leader soon, no
//!   acknowledged write lost, identical data and applied index on all members;
//!   the smallest restart case on its own;
//! - losing a minority (writes go on) and a majority (writes and linearizable
//!   reads fail with etcd's errors, in bounded time), then recovery;
//! - a partitioned member (the leader, then a follower) cannot serve
//!   linearizable reads, and catches up after the partition heals; one cut
//!   link (leader <-> follower) does not disturb the leader (pre-vote,
//!   check-quorum); a follower cut off past the leader's retained log catches
//!   up through a snapshot;
//! - linearizability of put/get/compare-and-swap histories from concurrent
//!   clients across a leader kill and across a partition (crates/linearizability),
//!   with a check that the same workload does catch stale (serializable) reads.
//!
//! After every scenario the members must agree: same applied and commit index,
//! same keys, values, revisions and versions (serializable dumps), and at most
//! one leader per term (from the members' "became leader at term" log lines).
//!
//! The tests run one at a time (a global lock): they share two cores, and their
//! timing assertions (a new leader within a few election timeouts) mean
//! something only without a neighbour. Raft timing: heartbeat 50 ms, election
//! timeout 500 ms. Every wait is bounded; every member is killed on Drop.
//! Randomness is seeded (printed; `ETCD_RS_CLUSTER_SEED=<u64>` fixes it).
//!
//! `restarted_member_rejoins_without_a_second_leader` pins a bug found here: the
//! first member of `--initial-cluster`, restarted, replayed the founding conf
//! changes one by one, looked like a lone voter after the first and won a term
//! alone that another member already led.

mod cluster_support;
mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_support::{Cluster, Dump, ELECTION_MS};
use common::{Etcdctl, Kind, Rng};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};
use linearizability::{check, Budget, CheckResult, KvInput, KvModel, KvOutput, Recorder};

/// etcd's request timeout for our test clusters: 5 s + 2 × election timeout.
const SERVER_REQUEST_TIMEOUT: Duration = Duration::from_millis(5000 + 2 * ELECTION_MS);
/// Bound on one client call when the test needs the server's own answer
/// (longer than the server's request timeout).
const CALL_TIMEOUT: Duration = Duration::from_secs(12);
/// How long a new leader may take after the old one is killed or cut off.
const NEW_LEADER_BOUND: Duration = Duration::from_millis(8 * ELECTION_MS);
/// How long members may take to agree on their applied index after a fault.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(20);

/// The errors etcd gives when a request cannot be committed or a linearizable
/// read cannot be served (no quorum).
const UNAVAILABLE_ERRORS: &[&str] = &[
    "etcdserver: no leader",
    "etcdserver: request timed out", // and its ", possibly due to …" variants
    "etcdserver: leader changed",
    "context deadline exceeded",
    "DeadlineExceeded",
];

static HEAVY: Mutex<()> = Mutex::new(());

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

// ---------------------------------------------------------------------------
// Seeded randomness (splitmix64).

fn test_seed(test: &str) -> u64 {
    common::test_seed("ETCD_RS_CLUSTER_SEED", test)
}

// ---------------------------------------------------------------------------
// Client helpers.

/// A client of `urls` (connections are made lazily, per call).
async fn client_of(urls: &[String], call_timeout: Duration) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(call_timeout);
    tokio::time::timeout(Duration::from_secs(5), Client::connect(urls, Some(options)))
        .await
        .unwrap_or_else(|_| panic!("connect to {urls:?}: timed out"))
        .unwrap_or_else(|e| panic!("connect to {urls:?}: {e}"))
}

fn show_err(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => format!("{other}"),
    }
}

/// Runs `f` bounded by `limit`; a timeout becomes an error naming it.
async fn bounded<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(show_err(&e)),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

fn is_unavailable_error(e: &str) -> bool {
    UNAVAILABLE_ERRORS.iter().any(|x| e.contains(x))
}

async fn put(client: &mut Client, key: &str, value: &str) -> Result<i64, String> {
    bounded(CALL_TIMEOUT, client.put(key, value, None))
        .await
        .map(|r| r.header().map_or(0, |h| h.revision()))
}

/// A linearizable get: (value, store revision).
async fn get(client: &mut Client, key: &str) -> Result<(Option<String>, i64), String> {
    get_with(client, key, None, CALL_TIMEOUT).await
}

async fn get_serializable(client: &mut Client, key: &str) -> Result<(Option<String>, i64), String> {
    get_with(
        client,
        key,
        Some(GetOptions::new().with_serializable()),
        CALL_TIMEOUT,
    )
    .await
}

async fn get_with(
    client: &mut Client,
    key: &str,
    options: Option<GetOptions>,
    limit: Duration,
) -> Result<(Option<String>, i64), String> {
    bounded(limit, client.get(key, options)).await.map(|r| {
        (
            r.kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
            r.header().map_or(0, |h| h.revision()),
        )
    })
}

/// Retries a put until it is acknowledged (bounded): its revision and how long it took.
async fn put_until_acked(
    client: &mut Client,
    key: &str,
    value: &str,
    limit: Duration,
) -> Result<(i64, Duration), String> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < limit {
        match bounded(Duration::from_secs(3), client.put(key, value, None)).await {
            Ok(r) => return Ok((r.header().map_or(0, |h| h.revision()), started.elapsed())),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "not acknowledged within {limit:?}; last error: {last}"
    ))
}

// ---------------------------------------------------------------------------
// What writers did, and checking it against what the members hold.

/// Puts of unique keys (each key written at most once) and their outcomes.
#[derive(Default)]
struct WriteLog {
    /// key → (value, revision) of acknowledged puts.
    acked: BTreeMap<String, (String, i64)>,
    /// key → (value, error) of puts whose outcome is unknown.
    unknown: BTreeMap<String, (String, String)>,
    /// When each put was acknowledged (for "writes resumed after …").
    ack_times: Vec<Instant>,
}

impl WriteLog {
    fn merge(&mut self, other: WriteLog) {
        self.acked.extend(other.acked);
        self.unknown.extend(other.unknown);
        self.ack_times.extend(other.ack_times);
    }

    fn acks_after(&self, t: Instant) -> usize {
        self.ack_times.iter().filter(|&&a| a > t).count()
    }
}

/// Checks that `dump` holds every acknowledged put (value, revision, version 1)
/// and no key that was never written; unknown puts may be there or not. Only
/// keys starting with `prefix` are considered. Returns the problems found.
fn check_writes(dump: &Dump, log: &WriteLog, prefix: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let held: BTreeMap<String, &cluster_support::DumpKv> = dump
        .kvs
        .iter()
        .map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), kv))
        .filter(|(k, _)| k.starts_with(prefix))
        .collect();
    let mut revisions = HashSet::new();
    for (key, (value, rev)) in &log.acked {
        match held.get(key) {
            None => problems.push(format!(
                "acknowledged put {key} = {value} (revision {rev}) is lost"
            )),
            Some(kv) => {
                let got = String::from_utf8_lossy(&kv.value);
                if got != *value || kv.mod_revision != *rev || kv.version != 1 {
                    problems.push(format!(
                        "acknowledged put {key} = {value} at revision {rev}: member holds {got} \
                         at mod revision {} (create {}, version {})",
                        kv.mod_revision, kv.create_revision, kv.version
                    ));
                }
            }
        }
        if !revisions.insert(*rev) {
            problems.push(format!("revision {rev} was acknowledged for two puts"));
        }
    }
    for (key, kv) in &held {
        let value = String::from_utf8_lossy(&kv.value);
        if kv.version != 1 || kv.create_revision != kv.mod_revision {
            problems.push(format!(
                "{key} was written once but has version {} (create {}, mod {}): a request \
                 applied twice?",
                kv.version, kv.create_revision, kv.mod_revision
            ));
        }
        match (log.acked.get(key), log.unknown.get(key)) {
            (Some(_), _) => {}
            (None, Some((v, _))) if *v == value => {}
            (None, Some((v, _))) => problems.push(format!(
                "{key} holds {value}, but the only put of it wrote {v}"
            )),
            (None, None) => problems.push(format!("{key} = {value} was never written")),
        }
    }
    if problems.len() > 30 {
        let n = problems.len();
        problems.truncate(30);
        problems.push(format!("… {} more", n - 30));
    }
    problems
}

/// Waits until every member has applied the same index, then reads the whole
/// key space from each (serializable) and requires identical dumps (keys,
/// values, create/mod revisions, versions and the store revision). Returns
/// the common dump.
fn assert_same_data(cluster: &Cluster, label: &str) -> Dump {
    assert_election_safety(cluster, label);
    let all: Vec<usize> = (0..cluster.size()).collect();
    let statuses = cluster
        .wait_converged(&all, CONVERGE_TIMEOUT)
        .unwrap_or_else(|e| panic!("{label}: {e}\n{}", cluster.all_logs()));
    let dumps: Vec<Dump> = all
        .iter()
        .map(|&i| {
            cluster
                .dump(i)
                .unwrap_or_else(|e| panic!("{label}: dump of m{i}: {e}\n{}", cluster.all_logs()))
        })
        .collect();
    for i in 1..dumps.len() {
        if dumps[i] != dumps[0] {
            let diff = describe_difference(&dumps[0], &dumps[i], i);
            panic!(
                "{label}: members hold different data after converging (applied index {}): \
                 {diff}\n{}",
                statuses[0].raft_applied_index,
                cluster.all_logs()
            );
        }
    }
    let revisions: HashSet<i64> = statuses.iter().map(|s| s.revision).collect();
    assert_eq!(
        revisions.len(),
        1,
        "{label}: Status revisions differ after converging: {statuses:?}"
    );
    // HashKV (etcd's corruption check) agrees at the converged revision.
    let hashes: Vec<(u32, i64)> = all
        .iter()
        .map(|&i| {
            cluster
                .hash_kv(i, dumps[0].revision)
                .unwrap_or_else(|e| panic!("{label}: HashKV of m{i}: {e}"))
        })
        .collect();
    assert!(
        hashes.iter().all(|h| *h == hashes[0]),
        "{label}: HashKV differs between members at revision {}: {hashes:?}",
        dumps[0].revision
    );
    eprintln!(
        "{label}: {} members agree: applied index {}, store revision {}, {} keys",
        cluster.size(),
        statuses[0].raft_applied_index,
        dumps[0].revision,
        dumps[0].kvs.len()
    );
    dumps.into_iter().next().expect("at least one member")
}

/// What differs between member 0's dump `a` and member i's `b`.
fn describe_difference(a: &Dump, b: &Dump, i: usize) -> String {
    let show = |kv: &cluster_support::DumpKv| {
        format!(
            "{}={} (create {}, mod {}, version {})",
            String::from_utf8_lossy(&kv.key),
            String::from_utf8_lossy(&kv.value),
            kv.create_revision,
            kv.mod_revision,
            kv.version
        )
    };
    let index = |d: &Dump| -> BTreeMap<Vec<u8>, cluster_support::DumpKv> {
        d.kvs
            .iter()
            .map(|kv| (kv.key.clone(), kv.clone()))
            .collect()
    };
    let (ia, ib) = (index(a), index(b));
    let only_a: Vec<String> = ia
        .iter()
        .filter(|(k, _)| !ib.contains_key(*k))
        .take(5)
        .map(|(_, kv)| show(kv))
        .collect();
    let only_b: Vec<String> = ib
        .iter()
        .filter(|(k, _)| !ia.contains_key(*k))
        .take(5)
        .map(|(_, kv)| show(kv))
        .collect();
    let mut differing: Vec<(&cluster_support::DumpKv, &cluster_support::DumpKv)> = ia
        .iter()
        .filter_map(|(k, x)| ib.get(k).filter(|y| *y != x).map(|y| (x, y)))
        .collect();
    differing.sort_by_key(|(x, _)| x.mod_revision);
    format!(
        "store revision m0 {} vs m{i} {}; {} vs {} keys; only on m0: {only_a:?}; only on \
         m{i}: {only_b:?}; {} keys differ, the first (by revision) {:?}",
        a.revision,
        b.revision,
        a.kvs.len(),
        b.kvs.len(),
        differing.len(),
        differing.first().map(|(x, y)| (show(x), show(y)))
    )
}

/// Raft's election safety, from the members' logs: one leader per term.
fn assert_election_safety(cluster: &Cluster, label: &str) {
    let violations = cluster.election_safety_violations();
    assert!(
        violations.is_empty(),
        "{label}: raft election safety violated (from the members' \"became leader\" log \
         lines): {}\nleaders by term: {:?}\n{}",
        violations.join("; "),
        cluster.leaders_by_term(),
        cluster.all_logs()
    );
}

/// Log lines that name a known missing feature (to report it precisely).
fn missing_feature_lines(cluster: &Cluster) -> Vec<String> {
    let mut lines = Vec::new();
    for i in 0..cluster.size() {
        for l in cluster.log_lines(i, "not supported yet") {
            lines.push(format!("m{i}: {l}"));
        }
    }
    lines
}

// ---------------------------------------------------------------------------
// 1. Membership and reads through every member.

fn membership_case(n: usize) {
    let _heavy = heavy_lock();
    let label = format!("membership_{n}");
    let cluster = Cluster::start(&label, n, &[]);
    let ctl = Etcdctl::reference(Kind::Ref35);
    let all_endpoints: Vec<String> = (0..n).map(|i| cluster.endpoint(i)).collect();
    let endpoints_arg = all_endpoints.join(",");

    // member list -w json, from every member.
    for i in 0..n {
        let out = ctl.run(
            &cluster.endpoint(i),
            &["member", "list", "-w", "json"],
            None,
        );
        assert_eq!(out.code, 0, "{label}: member list on m{i}: {out:?}");
        let json: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("member list -w json: {e}: {}", out.stdout));
        let members = json["members"].as_array().expect("members array");
        assert_eq!(
            members.len(),
            n,
            "{label}: member list on m{i}: {}",
            out.stdout
        );
        for j in 0..n {
            let m = members
                .iter()
                .find(|m| m["ID"].as_u64() == Some(cluster.member_id(j)))
                .unwrap_or_else(|| {
                    panic!(
                        "{label}: member list on m{i} lacks m{j} ({:x}): {}",
                        cluster.member_id(j),
                        out.stdout
                    )
                });
            assert_eq!(m["name"], cluster.name(j), "{label}: name of m{j}: {m}");
            assert_eq!(
                m["peerURLs"],
                serde_json::json!([cluster.peer_url(j)]),
                "{label}: peer URLs of m{j}: {m}"
            );
            assert_eq!(
                m["clientURLs"],
                serde_json::json!([cluster.client_url(j)]),
                "{label}: client URLs of m{j}: {m}"
            );
            assert!(
                m["isLearner"].is_null() || m["isLearner"] == false,
                "{label}: m{j} is a learner: {m}"
            );
        }
    }
    // The simple (default) format: "<id>, started, <name>, <peer>, <client>, false".
    let out = ctl.run(&cluster.endpoint(0), &["member", "list"], None);
    assert_eq!(out.code, 0, "{label}: member list: {out:?}");
    assert_eq!(out.stdout.lines().count(), n, "{label}: {}", out.stdout);
    for j in 0..n {
        let want = format!(
            "{:x}, started, {}, {}, {}, false",
            cluster.member_id(j),
            cluster.name(j),
            cluster.peer_url(j),
            cluster.client_url(j)
        );
        assert!(
            out.stdout.lines().any(|l| l == want),
            "{label}: member list lacks the line {want:?}:\n{}",
            out.stdout
        );
    }

    // endpoint status --cluster: every member, one leader they all name.
    let out = ctl.run(
        &cluster.endpoint(0),
        &["endpoint", "status", "--cluster", "-w", "json"],
        None,
    );
    assert_eq!(out.code, 0, "{label}: endpoint status --cluster: {out:?}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("endpoint status -w json: {e}: {}", out.stdout));
    let entries = json.as_array().expect("an array");
    assert_eq!(entries.len(), n, "{label}: {}", out.stdout);
    let mut seen_ids = HashSet::new();
    let mut leaders = HashSet::new();
    for e in entries {
        let endpoint = e["Endpoint"].as_str().expect("Endpoint");
        let member_id = e["Status"]["header"]["member_id"]
            .as_u64()
            .expect("member_id");
        let j = cluster
            .index_of(member_id)
            .unwrap_or_else(|| panic!("{label}: unknown member {member_id:x} in {e}"));
        assert_eq!(endpoint, cluster.client_url(j), "{label}: {e}");
        seen_ids.insert(member_id);
        leaders.insert(e["Status"]["leader"].as_u64().expect("leader"));
    }
    assert_eq!(seen_ids.len(), n, "{label}: {}", out.stdout);
    assert_eq!(
        leaders.len(),
        1,
        "{label}: members disagree on the leader: {}",
        out.stdout
    );
    let leader = *leaders.iter().next().unwrap();
    assert!(
        cluster.index_of(leader).is_some(),
        "{label}: the leader {leader:x} is not a member"
    );
    // The table form too (etcdctl prints one row per member).
    let out = ctl.run(&endpoints_arg, &["endpoint", "status", "-w", "table"], None);
    assert_eq!(out.code, 0, "{label}: endpoint status -w table: {out:?}");
    let rows: Vec<Vec<String>> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    let column = rows
        .first()
        .and_then(|h| h.iter().position(|c| c == "IS LEADER"))
        .unwrap_or_else(|| panic!("{label}: no IS LEADER column:\n{}", out.stdout));
    assert_eq!(
        rows.len(),
        n + 1,
        "{label}: one row per member:\n{}",
        out.stdout
    );
    let leader_rows = rows[1..].iter().filter(|r| r[column] == "true").count();
    assert_eq!(
        leader_rows, 1,
        "{label}: one leader row expected:\n{}",
        out.stdout
    );

    // endpoint health --cluster.
    let out = ctl.run(
        &cluster.endpoint(n - 1),
        &["endpoint", "health", "--cluster", "-w", "json"],
        None,
    );
    assert_eq!(out.code, 0, "{label}: endpoint health --cluster: {out:?}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("endpoint health -w json: {e}: {}", out.stdout));
    let entries = json.as_array().expect("an array");
    assert_eq!(entries.len(), n, "{label}: {}", out.stdout);
    for e in entries {
        assert_eq!(e["health"], true, "{label}: {e}");
    }
    let urls: HashSet<&str> = entries
        .iter()
        .filter_map(|e| e["endpoint"].as_str())
        .collect();
    assert_eq!(
        urls,
        cluster.endpoints().iter().map(String::as_str).collect(),
        "{label}: endpoint health --cluster endpoints"
    );

    // A write on each member, read back linearizably on every member at once.
    let rt = runtime();
    let urls = cluster.endpoints();
    rt.block_on(async {
        let mut clients = Vec::new();
        for u in &urls {
            clients.push(client_of(std::slice::from_ref(u), CALL_TIMEOUT).await);
        }
        let mut last_rev = 0;
        for i in 0..n {
            let key = format!("member-write/{i}");
            let value = format!("from-m{i}");
            let rev = put(&mut clients[i], &key, &value)
                .await
                .unwrap_or_else(|e| panic!("{label}: put on m{i}: {e}"));
            assert!(rev > last_rev, "{label}: revision {rev} after {last_rev}");
            last_rev = rev;
            for (j, client) in clients.iter_mut().enumerate() {
                let (got, read_rev) = get(client, &key)
                    .await
                    .unwrap_or_else(|e| panic!("{label}: linearizable get on m{j}: {e}"));
                assert_eq!(
                    got.as_deref(),
                    Some(value.as_str()),
                    "{label}: a linearizable read on m{j} right after the put on m{i} \
                     was acknowledged must see it"
                );
                assert!(
                    read_rev >= rev,
                    "{label}: m{j} answered at revision {read_rev} < {rev}"
                );
            }
        }
        // Through etcdctl too: put on the last member, get on the first.
        let out = ctl.run(
            &cluster.endpoint(n - 1),
            &["put", "ctl-key", "ctl-value"],
            None,
        );
        assert_eq!(out.code, 0, "{label}: etcdctl put: {out:?}");
        let out = ctl.run(
            &cluster.endpoint(0),
            &["get", "ctl-key", "--print-value-only"],
            None,
        );
        assert_eq!(
            (out.code, out.stdout.trim()),
            (0, "ctl-value"),
            "{label}: etcdctl get: {out:?}"
        );

        // Serializable reads converge on every member.
        let deadline = Instant::now() + Duration::from_secs(5);
        for (j, client) in clients.iter_mut().enumerate() {
            loop {
                let (got, _) = get_serializable(client, "ctl-key")
                    .await
                    .unwrap_or_else(|e| panic!("{label}: serializable get on m{j}: {e}"));
                if got.as_deref() == Some("ctl-value") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{label}: m{j}'s serializable read did not converge: {got:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let dump = assert_same_data(&cluster, &label);
    assert_eq!(dump.kvs.len(), n + 1, "{label}: {dump:?}");
}

#[test]
fn three_members_list_status_health_and_read_everywhere() {
    membership_case(3);
}

#[test]
fn five_members_list_status_health_and_read_everywhere() {
    membership_case(5);
}

// ---------------------------------------------------------------------------
// 2. Kill -9 the leader under concurrent writes.

/// Runs put writers until `stop`: writer w writes keys `{prefix}w{w}-{n}`
/// (each once) to its endpoints, at most one put every `pace`.
fn spawn_writers(
    rt: &tokio::runtime::Runtime,
    prefix: &str,
    endpoint_sets: Vec<Vec<String>>,
    pace: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<WriteLog>> {
    endpoint_sets
        .into_iter()
        .enumerate()
        .map(|(w, urls)| {
            let stop = stop.clone();
            let prefix = prefix.to_string();
            rt.spawn(async move {
                let mut client = client_of(&urls, CALL_TIMEOUT).await;
                let mut log = WriteLog::default();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let key = format!("{prefix}w{w}-{n:06}");
                    let value = format!("v{w}-{n}");
                    n += 1;
                    match put(&mut client, &key, &value).await {
                        Ok(rev) => {
                            log.acked.insert(key, (value, rev));
                            log.ack_times.push(Instant::now());
                        }
                        Err(e) => {
                            log.unknown.insert(key, (value, e));
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    if let Some(left) = pace.checked_sub(started.elapsed()) {
                        tokio::time::sleep(left).await;
                    }
                }
                log
            })
        })
        .collect()
}

fn join_writers(
    rt: &tokio::runtime::Runtime,
    writers: Vec<tokio::task::JoinHandle<WriteLog>>,
) -> WriteLog {
    let mut all = WriteLog::default();
    rt.block_on(async {
        for w in writers {
            let log = tokio::time::timeout(Duration::from_secs(30), w)
                .await
                .expect("a writer did not stop within 30 s")
                .expect("writer task");
            all.merge(log);
        }
    });
    all
}

fn summarize_errors(log: &WriteLog) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, e) in log.unknown.values() {
        // Errors differ in ports and durations; keep the gist.
        let gist: String = e.chars().take(90).collect();
        *counts.entry(gist).or_default() += 1;
    }
    counts
        .iter()
        .map(|(e, c)| format!("{c} × {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn leader_kill9_under_write_load_loses_nothing() {
    let _heavy = heavy_lock();
    let label = "leader_kill9";
    let mut cluster = Cluster::start(label, 3, &[]);
    let rt = runtime();
    let n = cluster.size();
    // Six writers: two per member on that member alone, three over every
    // member (the client balances). Paced so the restarted member is never
    // further behind than the leader's retained log (no snapshot needed).
    let mut sets = Vec::new();
    for w in 0..6 {
        sets.push(if w % 2 == 0 {
            vec![cluster.client_url((w / 2) % n)]
        } else {
            cluster.endpoints()
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(&rt, "load/", sets, Duration::from_millis(5), stop.clone());

    std::thread::sleep(Duration::from_millis(1500));
    let old = cluster.wait_leader(Duration::from_secs(5));
    let old_id = cluster.member_id(old);
    let killed_at = Instant::now();
    cluster.kill9(old);
    let survivors: Vec<usize> = (0..n).filter(|&i| i != old).collect();
    let new = cluster
        .wait_leader_among(&survivors, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{label}: {e}\n{}", cluster.all_logs()));
    let election = killed_at.elapsed();
    let elected_at = Instant::now();
    eprintln!(
        "{label}: killed leader m{old} ({old_id:x}); m{new} leads after {election:?} \
         (election timeout {ELECTION_MS} ms)"
    );

    std::thread::sleep(Duration::from_millis(2000));
    cluster.restart(old);
    eprintln!("{label}: m{old} restarted and healthy");
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let log = join_writers(&rt, writers);
    eprintln!(
        "{label}: {} puts acknowledged, {} unknown ({}), {} acknowledged after the new leader",
        log.acked.len(),
        log.unknown.len(),
        summarize_errors(&log),
        log.acks_after(elected_at)
    );

    let dump = assert_same_data(&cluster, label);
    let problems = check_writes(&dump, &log, "load/");
    assert!(
        problems.is_empty(),
        "{label}: {} problems:\n{}\n{}",
        problems.len(),
        problems.join("\n"),
        cluster.all_logs()
    );
    // One revision per write: every write here created one key.
    assert_eq!(
        dump.revision,
        1 + dump.kvs.len() as i64,
        "{label}: store revision {} but {} puts happened",
        dump.revision,
        dump.kvs.len()
    );
    assert!(
        log.acks_after(elected_at) > 0,
        "{label}: no write was acknowledged after the new leader was elected"
    );
    assert!(
        election <= NEW_LEADER_BOUND,
        "{label}: the new leader took {election:?} (bound {NEW_LEADER_BOUND:?})\n{}",
        cluster.all_logs()
    );
    let missing = missing_feature_lines(&cluster);
    assert!(missing.is_empty(), "{label}: {missing:?}");
}

/// The smallest case of a restart: the first member of --initial-cluster is
/// killed, the others write on, and it comes back.
#[test]
fn restarted_member_rejoins_without_a_second_leader() {
    let _heavy = heavy_lock();
    let label = "restart_m0";
    let mut cluster = Cluster::start(label, 3, &[]);
    let rt = runtime();
    cluster.kill9(0);
    cluster
        .wait_leader_among(&[1, 2], Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{label}: {e}\n{}", cluster.all_logs()));
    let mut log = WriteLog::default();
    let urls = cluster.endpoints();
    let write = |log: &mut WriteLog, member: usize, from: usize, to: usize| {
        rt.block_on(async {
            let mut c = client_of(std::slice::from_ref(&urls[member]), CALL_TIMEOUT).await;
            for k in from..to {
                let key = format!("r/{k:04}");
                let (rev, _) = put_until_acked(&mut c, &key, "v", Duration::from_secs(10))
                    .await
                    .unwrap_or_else(|e| panic!("{label}: put {key} on m{member}: {e}"));
                log.acked.insert(key, ("v".into(), rev));
            }
        })
    };
    write(&mut log, 1, 0, 50);
    cluster.restart(0);
    write(&mut log, 2, 50, 100);
    let dump = assert_same_data(&cluster, label);
    let problems = check_writes(&dump, &log, "r/");
    assert!(problems.is_empty(), "{label}: {}", problems.join("\n"));
}

// ---------------------------------------------------------------------------
// 3. Losing a minority, then a majority.

fn quorum_case(n: usize) {
    let _heavy = heavy_lock();
    let label = format!("quorum_{n}");
    let mut cluster = Cluster::start(&label, n, &[]);
    let rt = runtime();
    let mut log = WriteLog::default();

    // Kill a minority, the leader among them.
    let leader = cluster.wait_leader(Duration::from_secs(5));
    let minority = n / 2;
    let mut killed = vec![leader];
    killed.extend((0..n).filter(|&i| i != leader).take(minority - 1));
    for &i in &killed {
        cluster.kill9(i);
    }
    let survivors: Vec<usize> = (0..n).filter(|i| !killed.contains(i)).collect();
    eprintln!("{label}: killed {killed:?} (leader m{leader}); survivors {survivors:?}");
    let new = cluster
        .wait_leader_among(&survivors, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{label}: {e}\n{}", cluster.all_logs()));
    eprintln!("{label}: m{new} leads the survivors");

    let urls: Vec<String> = survivors.iter().map(|&i| cluster.client_url(i)).collect();
    rt.block_on(async {
        let mut clients = Vec::new();
        for u in &urls {
            clients.push(client_of(std::slice::from_ref(u), CALL_TIMEOUT).await);
        }
        // Writes continue on every survivor (the first may wait for the election).
        for (k, client) in clients.iter_mut().enumerate() {
            let key = format!("q/minority-first-{k}");
            let (rev, took) = put_until_acked(client, &key, "x", Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| panic!("{label}: put on m{}: {e}", survivors[k]));
            log.acked.insert(key, ("x".into(), rev));
            eprintln!(
                "{label}: first put on m{} acknowledged after {took:?}",
                survivors[k]
            );
        }
        for round in 0..10 {
            for k in 0..clients.len() {
                let key = format!("q/minority-{round}-{k}");
                let value = format!("r{round}");
                let rev = put(&mut clients[k], &key, &value)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("{label}: put on m{} with a quorum: {e}", survivors[k])
                    });
                log.acked.insert(key.clone(), (value.clone(), rev));
                // Read it back linearizably on another survivor.
                let other = (k + 1) % clients.len();
                let (got, _) = get(&mut clients[other], &key).await.unwrap_or_else(|e| {
                    panic!("{label}: linearizable get on m{}: {e}", survivors[other])
                });
                assert_eq!(got.as_deref(), Some(value.as_str()), "{label}: {key}");
            }
        }
    });

    // Kill one more: the majority is down.
    let victim = survivors[0];
    cluster.kill9(victim);
    killed.push(victim);
    let left: Vec<usize> = survivors[1..].to_vec();
    eprintln!("{label}: killed m{victim} too; {left:?} remain without a quorum");
    let urls: Vec<String> = left.iter().map(|&i| cluster.client_url(i)).collect();
    let outcomes = rt.block_on(async {
        // Every remaining member, concurrently: a put, a linearizable get and a
        // serializable get, each timed.
        let mut tasks = Vec::new();
        for (k, u) in urls.iter().enumerate() {
            let u = u.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = client_of(std::slice::from_ref(&u), CALL_TIMEOUT).await;
                let t = Instant::now();
                let p = put(&mut c, &format!("q/majority-down-{k}"), "never").await;
                let put_took = t.elapsed();
                let t = Instant::now();
                let g = get(&mut c, "q/minority-first-0").await;
                let get_took = t.elapsed();
                let s = get_serializable(&mut c, "q/minority-first-0").await;
                (p, put_took, g, get_took, s)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    });
    for (k, (p, put_took, g, get_took, s)) in outcomes.into_iter().enumerate() {
        let m = left[k];
        eprintln!(
            "{label}: without quorum, m{m}: put -> {p:?} after {put_took:?}; linearizable get \
             -> {g:?} after {get_took:?}; serializable get -> {s:?}"
        );
        match &p {
            Ok(rev) => panic!(
                "{label}: a put on m{m} was acknowledged (revision {rev}) with the majority down"
            ),
            Err(e) => {
                log.unknown
                    .insert(format!("q/majority-down-{k}"), ("never".into(), e.clone()));
                assert!(
                    is_unavailable_error(e),
                    "{label}: put on m{m} without quorum failed with an unexpected error: {e}"
                );
            }
        }
        match &g {
            Ok(v) => panic!(
                "{label}: a linearizable get on m{m} succeeded ({v:?}) with the majority down"
            ),
            Err(e) => assert!(
                is_unavailable_error(e),
                "{label}: linearizable get on m{m} without quorum: unexpected error: {e}"
            ),
        }
        // etcd answers within its request timeout (plus a margin for the machine).
        let answer_bound = SERVER_REQUEST_TIMEOUT + Duration::from_secs(3);
        assert!(
            put_took <= answer_bound && get_took <= answer_bound,
            "{label}: m{m} took {put_took:?} / {get_took:?} to fail (bound {answer_bound:?})"
        );
        assert_eq!(
            s.as_ref().map(|(v, _)| v.as_deref()),
            Ok(Some("x")),
            "{label}: a serializable get on m{m} is served locally without quorum"
        );
        assert!(
            !cluster.is_healthy(m),
            "{label}: m{m} reports healthy without quorum"
        );
    }

    // Bring everyone back: writes resume everywhere.
    for &i in &killed {
        cluster.spawn(i);
    }
    cluster
        .wait_all_healthy(Duration::from_secs(30))
        .unwrap_or_else(|e| {
            panic!(
                "{label}: after restarting {killed:?}: {e}\n{}",
                cluster.all_logs()
            )
        });
    let urls = cluster.endpoints();
    rt.block_on(async {
        for (i, u) in urls.iter().enumerate() {
            let mut c = client_of(std::slice::from_ref(u), CALL_TIMEOUT).await;
            let key = format!("q/recovered-{i}");
            let (rev, _) = put_until_acked(&mut c, &key, "back", Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| panic!("{label}: put on m{i} after recovery: {e}"));
            log.acked.insert(key, ("back".into(), rev));
        }
    });
    let dump = assert_same_data(&cluster, &label);
    let problems = check_writes(&dump, &log, "q/");
    assert!(
        problems.is_empty(),
        "{label}: {}\n{}",
        problems.join("\n"),
        cluster.all_logs()
    );
}

#[test]
fn three_members_survive_one_down_and_stop_writes_with_two_down() {
    quorum_case(3);
}

#[test]
fn five_members_survive_two_down_and_stop_writes_with_three_down() {
    quorum_case(5);
}

// ---------------------------------------------------------------------------
// 4. A partitioned member.

/// Partitions member `p` of a running cluster, checks that it cannot serve
/// linearizable reads or writes while the others keep writing, heals it, and
/// checks that it catches up.
fn partition_round(
    cluster: &mut Cluster,
    rt: &tokio::runtime::Runtime,
    p: usize,
    tag: &str,
    log: &mut WriteLog,
) {
    let label = format!("partition_{tag}");
    let n = cluster.size();
    let others: Vec<usize> = (0..n).filter(|&i| i != p).collect();
    cluster.net().partition(p);
    let cut_at = Instant::now();
    let leader = cluster
        .wait_leader_among(&others, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{label}: {e}\n{}", cluster.all_logs()));
    eprintln!(
        "{label}: m{p} cut off; m{leader} leads the rest after {:?}",
        cut_at.elapsed()
    );

    let other_urls: Vec<String> = others.iter().map(|&i| cluster.client_url(i)).collect();
    let p_url = cluster.client_url(p);
    let writes_during = 150;
    let latest_key = format!("part/{tag}/latest");
    let (stale_reads, p_put, p_serializable, last_value) = rt.block_on(async {
        // On the cut-off member, concurrently with the writes: three linearizable
        // reads (staggered) and a put.
        let mut reads = Vec::new();
        for k in 0..3u64 {
            let p_url = p_url.clone();
            let latest_key = latest_key.clone();
            reads.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(700 * k)).await;
                let mut c = client_of(std::slice::from_ref(&p_url), CALL_TIMEOUT).await;
                let t = Instant::now();
                let r = get_with(&mut c, &latest_key, None, CALL_TIMEOUT).await;
                (r, t.elapsed())
            }));
        }
        let p_writer = {
            let p_url = p_url.clone();
            let key = format!("part/{tag}/on-cut-off");
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let mut c = client_of(std::slice::from_ref(&p_url), CALL_TIMEOUT).await;
                put(&mut c, &key, "x").await
            })
        };
        let mut clients = Vec::new();
        for u in &other_urls {
            clients.push(client_of(std::slice::from_ref(u), CALL_TIMEOUT).await);
        }
        let mut last_value = String::new();
        for k in 0..writes_during {
            let count = clients.len();
            let c = &mut clients[k % count];
            let key = format!("part/{tag}/{k:04}");
            let value = format!("{tag}-{k}");
            let (rev, _) = put_until_acked(c, &key, &value, Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| panic!("{label}: put on the majority side: {e}"));
            log.acked.insert(key, (value.clone(), rev));
            put(c, &latest_key, &value)
                .await
                .unwrap_or_else(|e| panic!("{label}: put of {latest_key}: {e}"));
            last_value = value;
        }
        let mut pc = client_of(std::slice::from_ref(&p_url), CALL_TIMEOUT).await;
        let p_serializable = get_serializable(&mut pc, &latest_key).await;
        let mut results = Vec::new();
        for r in reads {
            results.push(r.await.expect("reader task"));
        }
        let p_put = p_writer.await.expect("writer task");
        (results, p_put, p_serializable, last_value)
    });
    for (r, took) in &stale_reads {
        eprintln!("{label}: linearizable get on cut-off m{p}: {r:?} after {took:?}");
        match r {
            Ok((v, rev)) => panic!(
                "{label}: the cut-off member m{p} served a linearizable read of {latest_key}: \
                 {v:?} at revision {rev} (the majority has written up to {last_value})"
            ),
            Err(e) => assert!(
                is_unavailable_error(e) || e.starts_with("no answer within"),
                "{label}: linearizable read on the cut-off member: unexpected error {e}"
            ),
        }
    }
    eprintln!(
        "{label}: put on cut-off m{p}: {p_put:?}; serializable get there: {p_serializable:?}"
    );
    match &p_put {
        Ok(rev) => panic!("{label}: a put on the cut-off member was acknowledged at {rev}"),
        Err(e) => {
            log.unknown
                .insert(format!("part/{tag}/on-cut-off"), ("x".into(), e.clone()));
        }
    }
    assert!(
        !cluster.is_healthy(p),
        "{label}: the cut-off m{p} reports healthy"
    );

    cluster.net().heal(p);
    let healed_at = Instant::now();
    cluster
        .wait_healthy(p, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{label}: m{p} after healing {e}\n{}", cluster.all_logs()));
    eprintln!(
        "{label}: healed; m{p} healthy after {:?}",
        healed_at.elapsed()
    );
    let dump = assert_same_data(cluster, &label);
    let problems = check_writes(
        &Dump {
            revision: dump.revision,
            kvs: dump
                .kvs
                .iter()
                .filter(|kv| !kv.key.ends_with(b"/latest"))
                .cloned()
                .collect(),
        },
        log,
        "part/",
    );
    assert!(problems.is_empty(), "{label}: {}", problems.join("\n"));
    rt.block_on(async {
        let mut pc = client_of(std::slice::from_ref(&p_url), CALL_TIMEOUT).await;
        let (got, _) = get(&mut pc, &latest_key)
            .await
            .unwrap_or_else(|e| panic!("{label}: linearizable get on healed m{p}: {e}"));
        assert_eq!(
            got.as_deref(),
            Some(last_value.as_str()),
            "{label}: healed m{p}"
        );
    });
}

#[test]
fn partitioned_leader_then_follower_refuse_linearizable_reads_and_catch_up() {
    let _heavy = heavy_lock();
    let mut cluster = Cluster::start("partition", 3, &[]);
    let rt = runtime();
    let mut log = WriteLog::default();
    let leader = cluster.wait_leader(Duration::from_secs(5));
    partition_round(&mut cluster, &rt, leader, "leader", &mut log);
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let follower = (leader + 1) % cluster.size();
    partition_round(&mut cluster, &rt, follower, "follower", &mut log);
    let (accepted, unidentified) = cluster.net().stats();
    eprintln!("partition: the proxy accepted {accepted} connections, {unidentified} unidentified");
    let missing = missing_feature_lines(&cluster);
    assert!(missing.is_empty(), "partition: {missing:?}");
}

/// One link cut, between the leader and one follower: with pre-vote and
/// check-quorum the cut-off follower cannot disrupt the cluster (the third
/// member still hears the leader and refuses its pre-votes), so the leader
/// and the term stay as they were while writes go on; the follower, which
/// has no leader, cannot serve linearizable reads; after the link heals it
/// catches up, still in the same term.
#[test]
fn cut_link_between_leader_and_follower_does_not_disrupt_the_leader() {
    let _heavy = heavy_lock();
    let label = "cut_link";
    let mut cluster = Cluster::start(label, 3, &[]);
    let rt = runtime();
    let leader = cluster.wait_leader(Duration::from_secs(5));
    let leader_id = cluster.member_id(leader);
    let before = cluster
        .status(leader)
        .unwrap_or_else(|e| panic!("{label}: status: {e}"));
    let cut = (leader + 1) % 3;
    let third = (leader + 2) % 3;
    cluster.net().cut(leader, cut);
    eprintln!("{label}: cut the link m{leader} (leader) <-> m{cut}; m{third} sees both");
    let urls = cluster.endpoints();
    let mut log = WriteLog::default();
    let cut_read = rt.block_on(async {
        let mut clients = [
            client_of(std::slice::from_ref(&urls[leader]), CALL_TIMEOUT).await,
            client_of(std::slice::from_ref(&urls[third]), CALL_TIMEOUT).await,
        ];
        // Writes for three seconds (six election timeouts), alternating.
        let started = Instant::now();
        let mut k = 0;
        while started.elapsed() < Duration::from_secs(3) {
            let key = format!("cut/{k:05}");
            let rev = put(&mut clients[k % 2], &key, "v")
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{label}: put {key} failed {:?} after the cut: {e}\n{}",
                        started.elapsed(),
                        cluster.all_logs()
                    )
                });
            log.acked.insert(key, ("v".into(), rev));
            k += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut c = client_of(std::slice::from_ref(&urls[cut]), CALL_TIMEOUT).await;
        get(&mut c, "cut/00000").await
    });
    eprintln!(
        "{label}: {} puts during the cut; linearizable get on m{cut}: {cut_read:?}",
        log.acked.len()
    );
    for i in [leader, third] {
        let s = cluster
            .status(i)
            .unwrap_or_else(|e| panic!("{label}: status of m{i}: {e}"));
        assert_eq!(
            (s.leader, s.raft_term),
            (leader_id, before.raft_term),
            "{label}: m{i} reports leader {:x} in term {} during the cut; before it: {:x} in \
             term {} (pre-vote and check-quorum should keep both)\n{}",
            s.leader,
            s.raft_term,
            leader_id,
            before.raft_term,
            cluster.all_logs()
        );
    }
    if let Ok(v) = &cut_read {
        panic!("{label}: m{cut}, cut off from the leader, served a linearizable read: {v:?}");
    }
    cluster.net().heal_all();
    cluster
        .wait_healthy(cut, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{label}: m{cut} after healing {e}\n{}", cluster.all_logs()));
    let dump = assert_same_data(&cluster, label);
    let problems = check_writes(&dump, &log, "cut/");
    assert!(problems.is_empty(), "{label}: {}", problems.join("\n"));
    let after = cluster
        .status(cut)
        .unwrap_or_else(|e| panic!("{label}: status: {e}"));
    assert_eq!(
        (after.leader, after.raft_term),
        (leader_id, before.raft_term),
        "{label}: after healing, m{cut} reports leader {:x} in term {}",
        after.leader,
        after.raft_term
    );
}

/// A follower cut off while the others write far past what the leader keeps
/// of its log (5,000 entries behind each snapshot; a snapshot every 1,000
/// entries here) can only catch up through a snapshot of the leader's backend.
#[test]
fn follower_cut_off_past_the_retained_log_catches_up_by_snapshot() {
    let _heavy = heavy_lock();
    let label = "snapshot_catch_up";
    let mut cluster = Cluster::start(label, 3, &["--snapshot-count=1000"]);
    let rt = runtime();
    let leader = cluster.wait_leader(Duration::from_secs(5));
    let cut = (leader + 1) % 3;
    let others: Vec<usize> = (0..3).filter(|&i| i != cut).collect();
    let behind = cluster
        .status(cut)
        .unwrap_or_else(|e| panic!("{label}: status: {e}"))
        .raft_index;
    cluster.net().partition(cut);
    eprintln!("{label}: cut off m{cut} at raft index {behind}");
    let stop = Arc::new(AtomicBool::new(false));
    let sets: Vec<Vec<String>> = (0..8)
        .map(|w| vec![cluster.client_url(others[w % 2])])
        .collect();
    let writers = spawn_writers(&rt, "snap/", sets, Duration::ZERO, stop.clone());
    // Past the snapshot after index behind + 5,000 + 1,000, with a margin.
    let target = behind + 7_000;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut index = 0;
    while index < target && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(s) = cluster.status(leader) {
            index = s.raft_index;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let log = join_writers(&rt, writers);
    eprintln!(
        "{label}: the leader is at raft index {index}; {} puts acknowledged, {} unknown ({})",
        log.acked.len(),
        log.unknown.len(),
        summarize_errors(&log)
    );
    assert!(
        index >= target,
        "{label}: the writers reached raft index {index} only, not {target}, within 60 s"
    );
    cluster.net().heal(cut);
    let healed_at = Instant::now();
    cluster
        .wait_healthy(cut, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{label}: m{cut} after healing {e}\n{}", cluster.all_logs()));
    eprintln!(
        "{label}: m{cut} healthy {:?} after healing; its snapshot log lines: {:?}",
        healed_at.elapsed(),
        cluster.log_lines(cut, "snapshot")
    );
    let dump = assert_same_data(&cluster, label);
    let problems = check_writes(&dump, &log, "snap/");
    assert!(
        problems.is_empty(),
        "{label}: {}\n{}",
        problems.join("\n"),
        cluster.all_logs()
    );
    assert!(
        !cluster
            .log_lines(cut, "installing a snapshot from the leader")
            .is_empty(),
        "{label}: m{cut} caught up without a snapshot: the test did not get it far enough behind"
    );
}

// ---------------------------------------------------------------------------
// 5. Linearizability under faults.

const LIN_CLIENTS: u64 = 8;
const LIN_KEYS: u64 = 10;
/// Bound on one operation of the linearizability workload; a call past it is
/// recorded as of unknown outcome.
const LIN_CALL_TIMEOUT: Duration = Duration::from_secs(3);

type History = Recorder<KvInput, KvOutput>;

/// One client of the linearizability workload: random get / put / CAS on
/// LIN_KEYS keys until `stop`, every call recorded.
async fn lin_client(
    id: u64,
    urls: Vec<String>,
    rec: Arc<History>,
    stop: Arc<AtomicBool>,
    seed: u64,
    serializable_reads_only: bool,
) -> (u64, u64) {
    let mut rng = Rng::new(seed ^ (id.wrapping_mul(0x5851_f42d_4c95_7f2d)));
    let mut client = client_of(&urls, LIN_CALL_TIMEOUT).await;
    // The value this client last saw per key (CAS compares against it).
    let mut seen: BTreeMap<String, Option<String>> = BTreeMap::new();
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("lin/k{}", rng.range(0, LIN_KEYS));
        let roll = rng.range(0, 100);
        let value = format!("c{id}-{n}");
        n += 1;
        let result: Result<(), ()> = if roll < 40 || serializable_reads_only {
            let h = rec.call(id, KvInput::get(&key));
            let options = serializable_reads_only.then(|| GetOptions::new().with_serializable());
            match bounded(LIN_CALL_TIMEOUT, client.get(key.as_str(), options)).await {
                Ok(r) => {
                    let v = r
                        .kvs()
                        .first()
                        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
                    rec.ret(h, KvOutput::get(v.as_deref()));
                    seen.insert(key, v);
                    Ok(())
                }
                Err(_) => {
                    rec.fail(h);
                    Err(())
                }
            }
        } else if roll < 70 {
            let h = rec.call(id, KvInput::put(&key, &value));
            match bounded(
                LIN_CALL_TIMEOUT,
                client.put(key.as_str(), value.as_str(), None),
            )
            .await
            {
                Ok(_) => {
                    rec.ret(h, KvOutput::Put);
                    seen.insert(key, Some(value));
                    Ok(())
                }
                Err(_) => {
                    rec.fail(h);
                    Err(())
                }
            }
        } else {
            let expected = seen.get(&key).cloned().flatten();
            let h = rec.call(id, KvInput::cas(&key, expected.as_deref(), &value));
            let compare = match &expected {
                Some(v) => Compare::value(key.as_str(), CompareOp::Equal, v.as_str()),
                None => Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
            };
            let txn = Txn::new()
                .when([compare])
                .and_then([TxnOp::put(key.as_str(), value.as_str(), None)])
                .or_else([TxnOp::get(key.as_str(), None)]);
            match bounded(LIN_CALL_TIMEOUT, client.txn(txn)).await {
                Ok(r) if r.succeeded() => {
                    rec.ret(h, KvOutput::TxnSucceeded);
                    seen.insert(key, Some(value));
                    Ok(())
                }
                Ok(r) => {
                    let v = r.op_responses().into_iter().find_map(|op| match op {
                        etcd_client::TxnOpResponse::Get(g) => Some(
                            g.kvs()
                                .first()
                                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                        ),
                        _ => None,
                    });
                    match v {
                        Some(v) => {
                            rec.ret(h, KvOutput::txn_failed(v.as_deref()));
                            seen.insert(key, v);
                            Ok(())
                        }
                        None => {
                            // A failed txn without its get: not what was asked.
                            rec.fail(h);
                            Err(())
                        }
                    }
                }
                Err(_) => {
                    rec.fail(h);
                    Err(())
                }
            }
        };
        match result {
            Ok(()) => {
                ok += 1;
                tokio::time::sleep(Duration::from_millis(rng.range(2, 8))).await;
            }
            Err(()) => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    (ok, failed)
}

/// Runs the workload on `cluster` while `fault` (run on this thread) injects
/// faults, then checks the history.
///
/// Beside the checked clients, one client per member does serializable reads,
/// recorded apart (same clock) as if they were linearizable. Added to the
/// history they must make it fail when `stale_reads_expected` (a cut-off
/// member serves its old data): a check that the workload and the checker
/// can see a stale read at all.
fn linearizability_case(
    label: &str,
    mut cluster: Cluster,
    stale_reads_expected: bool,
    fault: impl FnOnce(&mut Cluster),
) {
    let seed = test_seed(label);
    let rt = runtime();
    let base = Instant::now();
    let clock = move || u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let rec: Arc<History> = Arc::new(Recorder::with_clock(clock));
    let stale_rec: Arc<History> = Arc::new(Recorder::with_clock(clock));
    let stop = Arc::new(AtomicBool::new(false));
    let n = cluster.size();
    let mut tasks = Vec::new();
    for id in 0..LIN_CLIENTS {
        // Six clients on one member each, two over every member.
        let urls = if id < 6 {
            vec![cluster.client_url(id as usize % n)]
        } else {
            cluster.endpoints()
        };
        tasks.push(rt.spawn(lin_client(id, urls, rec.clone(), stop.clone(), seed, false)));
    }
    let mut stale_tasks = Vec::new();
    for m in 0..n {
        let urls = vec![cluster.client_url(m)];
        let id = 100 + m as u64;
        stale_tasks.push(rt.spawn(lin_client(
            id,
            urls,
            stale_rec.clone(),
            stop.clone(),
            seed,
            true,
        )));
    }
    std::thread::sleep(Duration::from_millis(2500));
    fault(&mut cluster);
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = rt.block_on(async {
        let (mut ok, mut failed) = (0, 0);
        for t in tasks {
            let (o, f) = tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("a client did not stop")
                .expect("client task");
            ok += o;
            failed += f;
        }
        for t in stale_tasks {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("a client did not stop")
                .expect("client task");
        }
        (ok, failed)
    });
    let history = Arc::try_unwrap(rec)
        .ok()
        .expect("every client is done")
        .into_history();
    let stale_history = Arc::try_unwrap(stale_rec)
        .ok()
        .expect("every client is done")
        .into_history();
    eprintln!(
        "{label}: {} operations ({ok} returned, {failed} failed or timed out); checking",
        history.len()
    );
    let started = Instant::now();
    let result = check(
        &KvModel,
        &history,
        Budget {
            steps_max: 10_000_000,
            wall_time_max: Some(Duration::from_secs(60)),
        },
    );
    eprintln!(
        "{label}: check took {:?}: {}",
        started.elapsed(),
        short(&result)
    );
    match &result {
        CheckResult::Linearizable => {}
        CheckResult::Unknown { keys } => {
            eprintln!("{label}: UNKNOWN (budget exhausted) on keys {keys:?}; not a failure");
        }
        CheckResult::NotLinearizable { .. } => {
            panic!("{label}: seed {seed}: {result}\n{}", cluster.all_logs());
        }
    }
    assert!(
        ok > 500,
        "{label}: too few operations returned ({ok}) to mean anything"
    );

    // The sensitivity check: serializable reads passed off as linearizable.
    let mut with_stale = history.clone();
    with_stale.extend(stale_history.iter().cloned());
    let stale = check(
        &KvModel,
        &with_stale,
        Budget {
            steps_max: 10_000_000,
            wall_time_max: Some(Duration::from_secs(30)),
        },
    );
    eprintln!(
        "{label}: with {} serializable reads counted as linearizable: {}",
        stale_history.len(),
        short(&stale)
    );
    if stale_reads_expected {
        assert!(
            !stale.is_linearizable(),
            "{label}: serializable reads on a cut-off member went unnoticed by the check: the \
             workload cannot see stale reads"
        );
    }
    assert_same_data(&cluster, label);
}

fn short(result: &CheckResult) -> String {
    match result {
        CheckResult::NotLinearizable { key, .. } => format!("not linearizable on {key}"),
        other => other.to_string(),
    }
}

#[test]
fn linearizable_across_leader_kill9_and_restart() {
    let _heavy = heavy_lock();
    let cluster = Cluster::start("lin_kill", 3, &[]);
    linearizability_case("lin_kill", cluster, false, |cluster| {
        let leader = cluster.wait_leader(Duration::from_secs(5));
        cluster.kill9(leader);
        eprintln!("lin_kill: killed leader m{leader}");
        let others: Vec<usize> = (0..cluster.size()).filter(|&i| i != leader).collect();
        let new = cluster
            .wait_leader_among(&others, Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("lin_kill: {e}"));
        eprintln!("lin_kill: m{new} leads");
        std::thread::sleep(Duration::from_millis(2000));
        cluster.restart(leader);
        eprintln!("lin_kill: m{leader} restarted");
    });
}

#[test]
fn linearizable_across_leader_partition_and_heal() {
    let _heavy = heavy_lock();
    let cluster = Cluster::start("lin_partition", 3, &[]);
    linearizability_case("lin_partition", cluster, true, |cluster| {
        let leader = cluster.wait_leader(Duration::from_secs(5));
        cluster.net().partition(leader);
        eprintln!("lin_partition: cut off leader m{leader}");
        let others: Vec<usize> = (0..cluster.size()).filter(|&i| i != leader).collect();
        let new = cluster
            .wait_leader_among(&others, Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("lin_partition: {e}"));
        eprintln!("lin_partition: m{new} leads the rest");
        std::thread::sleep(Duration::from_millis(3000));
        cluster.net().heal(leader);
        cluster
            .wait_healthy(leader, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("lin_partition: m{leader} after healing {e}"));
        eprintln!("lin_partition: healed m{leader}");
    });
}
