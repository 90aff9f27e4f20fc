//! `/metrics`, `--listen-metrics-urls` and the health endpoints, end to end:
//!
//! - one member: the families etcd exports, with etcd's types and label
//!   sets, move as a known workload (puts, ranges, a delete, a txn, leases, a
//!   watch, a failing RPC) says they must; histograms carry etcd's buckets;
//!   `--metrics=extensive` adds `grpc_server_handling_seconds`;
//! - the family names, types and help texts agree with etcd 3.5.1's scrape
//!   after the same workload (every family we export that 3.5.1 has, and the
//!   families we claim, exist on both sides);
//! - a `--listen-metrics-urls` listener serves /metrics and the health
//!   endpoints and nothing else;
//! - `/livez`, `/readyz`, their sub-paths, `?verbose`, `?exclude=`, 405 on
//!   POST, and `/health` with alarms raised through the Maintenance Alarm RPC
//!   (NOSPACE, CORRUPT) and `?exclude=`;
//! - three members: peer byte counters and active peers; after two members
//!   are killed, the survivor's `/health`, `/readyz` and `/livez` answer as
//!   etcd does without a leader.
//!
//! The body is parsed with `prometheus-parse`. No timing is asserted; every
//! wait is bounded.

mod cluster_support;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cluster_support::Cluster;
use common::{free_port, http_get, EtcdProcess, Etcdctl, Kind};
use etcd_client::{
    AlarmAction, AlarmOptions, AlarmType, Client, Compare, CompareOp, Txn, TxnOp, WatchOptions,
};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(100);

/// The families this server claims to export with etcd's names (checked on
/// our side always, and on etcd 3.5.1's where 3.5.1 has them).
const CLAIMED: &[&str] = &[
    "etcd_server_has_leader",
    "etcd_server_is_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_server_proposals_pending",
    "etcd_server_proposals_failed_total",
    "etcd_server_id",
    "etcd_server_version",
    "etcd_cluster_version",
    "etcd_server_quota_backend_bytes",
    "etcd_server_is_learner",
    "etcd_server_slow_apply_total",
    "etcd_server_heartbeat_send_failures_total",
    "etcd_server_health_success",
    "etcd_server_health_failures",
    "etcd_server_client_requests_total",
    "etcd_disk_wal_fsync_duration_seconds",
    "etcd_disk_backend_commit_duration_seconds",
    "etcd_disk_wal_write_bytes_total",
    "etcd_disk_backend_snapshot_duration_seconds",
    "etcd_disk_backend_defrag_duration_seconds",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_mvcc_put_total",
    "etcd_mvcc_delete_total",
    "etcd_mvcc_range_total",
    "etcd_mvcc_txn_total",
    "etcd_debugging_mvcc_keys_total",
    "etcd_debugging_mvcc_current_revision",
    "etcd_debugging_mvcc_compact_revision",
    "etcd_debugging_mvcc_watcher_total",
    "etcd_debugging_mvcc_db_compaction_keys_total",
    "etcd_debugging_lease_granted_total",
    "etcd_debugging_lease_revoked_total",
    "etcd_debugging_lease_renewed_total",
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "grpc_server_msg_received_total",
    "grpc_server_msg_sent_total",
    "etcd_network_client_grpc_sent_bytes_total",
    "etcd_network_client_grpc_received_bytes_total",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
    "process_virtual_memory_bytes",
];

/// Families we export that etcd 3.5.1 does not: etcd 3.6's health-check
/// families and the Rust process collector's thread count.
const NOT_IN_3_5_1: &[&str] = &[
    "etcd_server_healthcheck",
    "etcd_server_healthchecks_total",
    "process_threads",
];

// ---------------------------------------------------------------------------
// Scraping.

/// One scrape: the parsed samples and each family's TYPE and HELP.
struct Scrape {
    samples: Vec<prometheus_parse::Sample>,
    types: BTreeMap<String, String>,
    helps: BTreeMap<String, String>,
}

/// The body of an HTTP answer read by `http_get` (de-chunked: Go's server
/// streams /metrics in chunks), with its status line.
fn split_response(response: &str) -> (String, String) {
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    if !chunked {
        return (status, body.to_string());
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    (status, out)
}

fn get(port: u16, path: &str) -> (String, String) {
    let response = http_get(port, path).unwrap_or_else(|| panic!("GET {path}: no answer"));
    split_response(&response)
}

fn scrape(port: u16) -> Scrape {
    let (status, body) = get(port, "/metrics");
    assert!(status.contains("200"), "GET /metrics: {status}");
    parse(&body)
}

fn parse(body: &str) -> Scrape {
    let mut types = BTreeMap::new();
    let mut helps = BTreeMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            types.insert(name.to_string(), kind.to_string());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            helps.insert(name.to_string(), help.to_string());
        }
    }
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("a Prometheus text body");
    Scrape {
        samples: parsed.samples,
        types,
        helps,
    }
}

impl Scrape {
    fn has(&self, family: &str) -> bool {
        self.types.contains_key(family)
    }

    /// The samples of `name` whose labels include `labels`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a prometheus_parse::Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// The sum of the counter or gauge samples of `name` with `labels` (0 if none).
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels)
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                _ => 0.0,
            })
            .sum()
    }

    fn value(&self, name: &str) -> f64 {
        let mut found = self.matching(name, &[]);
        let sample = found
            .next()
            .unwrap_or_else(|| panic!("no sample of {name}"));
        match &sample.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => *v,
            other => panic!("{name}: not a counter or gauge: {other:?}"),
        }
    }

    /// The label names of every sample of `name` (bucket bounds left out).
    fn label_sets(&self, name: &str) -> BTreeSet<Vec<String>> {
        self.matching(name, &[])
            .map(|s| {
                let mut keys: Vec<String> = s.labels.keys().cloned().collect();
                keys.sort();
                keys
            })
            .collect()
    }

    /// The upper bounds of a histogram's buckets (+Inf included).
    fn buckets(&self, name: &str) -> Vec<f64> {
        let sample = self
            .matching(name, &[])
            .find(|s| matches!(s.value, prometheus_parse::Value::Histogram(_)))
            .unwrap_or_else(|| panic!("no histogram {name}"));
        match &sample.value {
            prometheus_parse::Value::Histogram(h) => h.iter().map(|b| b.less_than).collect(),
            _ => unreachable!(),
        }
    }

    /// Sample count of a histogram (its `+Inf` bucket).
    fn histogram_count(&self, name: &str) -> f64 {
        self.matching(name, &[])
            .filter_map(|s| match &s.value {
                prometheus_parse::Value::Histogram(h) => h.last().map(|b| b.count),
                _ => None,
            })
            .sum()
    }
}

fn exponential(start: f64, factor: f64, count: usize) -> Vec<f64> {
    let mut out: Vec<f64> = (0..count).map(|i| start * factor.powi(i as i32)).collect();
    out.push(f64::INFINITY);
    out
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x == y || (x - y).abs() <= 1e-9 * y.abs().max(1.0))
}

// ---------------------------------------------------------------------------
// Clients.

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn connect(endpoint: &str) -> Client {
    tokio::time::timeout(CALL_TIMEOUT, Client::connect([endpoint], None))
        .await
        .expect("connect: timed out")
        .expect("connect")
}

async fn bounded<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, etcd_client::Error> {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

/// Waits (bounded) until `cond` holds for a fresh scrape; the last scrape.
fn wait_scrape(port: u16, what: &str, cond: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = scrape(port);
        if cond(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------
// One member.

#[test]
fn one_member_metrics_follow_the_workload() {
    let metrics_port = free_port();
    let metrics_url = format!("--listen-metrics-urls=http://127.0.0.1:{metrics_port}");
    let etcd = EtcdProcess::start(Kind::Ours, &[&metrics_url, "--metrics=extensive"]);
    let port = etcd.client_port();
    let before = scrape(port);

    let rt = runtime();
    let (member_id, revision) = rt.block_on(async {
        let mut c = connect(&etcd.endpoint()).await;
        // A watch first, so that it sees the writes.
        let mut events = bounded(
            "watch",
            c.watch("k", Some(WatchOptions::new().with_prefix())),
        )
        .await
        .expect("watch");
        let created = bounded("watch created", events.message())
            .await
            .expect("watch stream")
            .expect("a watch response");
        assert!(created.created());
        let watching = scrape(port);
        assert_eq!(watching.value("etcd_debugging_mvcc_watcher_total"), 1.0);
        assert_eq!(
            watching.value("etcd_debugging_mvcc_watch_stream_total"),
            1.0
        );
        for i in 0..3 {
            bounded("put", c.put(format!("k{i}"), "value", None))
                .await
                .expect("put");
        }
        for _ in 0..2 {
            bounded("get", c.get("k0", None)).await.expect("get");
        }
        bounded("delete", c.delete("k2", None))
            .await
            .expect("delete");
        let txn = Txn::new()
            .when([Compare::value("k0", CompareOp::Equal, "value")])
            .and_then([TxnOp::put("k3", "v3", None)]);
        let t = bounded("txn", c.txn(txn)).await.expect("txn");
        assert!(t.succeeded());
        let lease = bounded("grant", c.lease_grant(60, None))
            .await
            .expect("grant");
        let (mut keeper, mut responses) = bounded("keep-alive", c.lease_keep_alive(lease.id()))
            .await
            .expect("keep-alive");
        bounded("keep-alive send", keeper.keep_alive())
            .await
            .expect("keep-alive send");
        bounded("keep-alive answer", responses.message())
            .await
            .expect("keep-alive answer");
        bounded("revoke", c.lease_revoke(lease.id()))
            .await
            .expect("revoke");
        // A failing RPC: NotFound.
        let err = bounded("revoke again", c.lease_revoke(lease.id())).await;
        assert!(err.is_err(), "revoking a revoked lease must fail");
        // The watch saw the first put.
        let first = bounded("watch events", events.message())
            .await
            .expect("watch stream")
            .expect("a watch response");
        assert!(!first.events().is_empty());
        bounded("defragment", c.defragment())
            .await
            .expect("defragment");
        let status = bounded("status", c.status()).await.expect("status");
        let header = status.header().expect("header");
        (header.member_id(), header.revision())
    });

    let after = scrape(port);
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);

    // Types, as etcd declares them.
    for (name, kind) in [
        ("etcd_server_has_leader", "gauge"),
        ("etcd_server_proposals_committed_total", "gauge"),
        ("etcd_disk_wal_write_bytes_total", "gauge"),
        ("etcd_mvcc_put_total", "counter"),
        ("etcd_debugging_mvcc_keys_total", "gauge"),
        ("grpc_server_handled_total", "counter"),
        ("grpc_server_handling_seconds", "histogram"),
        ("etcd_disk_wal_fsync_duration_seconds", "histogram"),
        ("etcd_server_client_requests_total", "counter"),
        ("process_cpu_seconds_total", "counter"),
    ] {
        assert_eq!(
            after.types.get(name).map(String::as_str),
            Some(kind),
            "{name}"
        );
    }
    for name in CLAIMED {
        assert!(after.has(name), "{name} missing from our scrape");
    }

    // Leadership and identity.
    assert_eq!(after.value("etcd_server_has_leader"), 1.0);
    assert_eq!(after.value("etcd_server_is_leader"), 1.0);
    assert_eq!(after.value("etcd_server_is_learner"), 0.0);
    assert!(after.value("etcd_server_leader_changes_seen_total") >= 1.0);
    let id = format!("{member_id:x}");
    assert_eq!(after.sum("etcd_server_id", &[("server_id", &id)]), 1.0);
    assert_eq!(after.value("etcd_server_quota_backend_bytes"), 2147483648.0);
    assert!(
        after.value("etcd_server_proposals_applied_total")
            <= after.value("etcd_server_proposals_committed_total")
    );
    assert_eq!(after.value("etcd_server_proposals_pending"), 0.0);

    // mvcc: 3 puts + the txn's put; 2 gets + the txn's compare; 1 delete; 1 txn.
    assert_eq!(delta("etcd_mvcc_put_total", &[]), 4.0);
    assert_eq!(delta("etcd_mvcc_range_total", &[]), 3.0);
    assert_eq!(delta("etcd_mvcc_delete_total", &[]), 1.0);
    assert_eq!(delta("etcd_mvcc_txn_total", &[]), 1.0);
    assert_eq!(after.value("etcd_debugging_mvcc_keys_total"), 3.0); // k0 k1 k3
    assert_eq!(
        after.value("etcd_debugging_mvcc_current_revision"),
        revision as f64
    );
    assert_eq!(after.value("etcd_debugging_mvcc_compact_revision"), -1.0);
    assert!(after.value("etcd_mvcc_db_total_size_in_bytes") > 0.0);
    assert!(
        after.value("etcd_mvcc_db_total_size_in_use_in_bytes")
            <= after.value("etcd_mvcc_db_total_size_in_bytes")
    );
    // The watch stream is closed with the runtime; it was there while open.
    assert_eq!(delta("etcd_debugging_lease_granted_total", &[]), 1.0);
    assert_eq!(delta("etcd_debugging_lease_revoked_total", &[]), 1.0);
    assert!(delta("etcd_debugging_lease_renewed_total", &[]) >= 1.0);

    // gRPC, per method and code.
    let put = [
        ("grpc_service", "etcdserverpb.KV"),
        ("grpc_method", "Put"),
        ("grpc_type", "unary"),
    ];
    assert_eq!(delta("grpc_server_started_total", &put), 3.0);
    assert_eq!(delta("grpc_server_msg_received_total", &put), 3.0);
    assert_eq!(delta("grpc_server_msg_sent_total", &put), 3.0);
    let put_ok = [put[0], put[1], put[2], ("grpc_code", "OK")];
    assert_eq!(delta("grpc_server_handled_total", &put_ok), 3.0);
    let revoke_not_found = [("grpc_method", "LeaseRevoke"), ("grpc_code", "NotFound")];
    assert_eq!(delta("grpc_server_handled_total", &revoke_not_found), 1.0);
    let revoke_ok = [("grpc_method", "LeaseRevoke"), ("grpc_code", "OK")];
    assert_eq!(delta("grpc_server_handled_total", &revoke_ok), 1.0);
    let watch = [("grpc_method", "Watch"), ("grpc_type", "bidi_stream")];
    assert_eq!(delta("grpc_server_started_total", &watch), 1.0);
    assert!(delta("grpc_server_msg_sent_total", &watch) >= 1.0);
    let keep_alive = [("grpc_method", "LeaseKeepAlive")];
    assert!(delta("grpc_server_msg_received_total", &keep_alive) >= 1.0);
    assert!(delta("etcd_network_client_grpc_received_bytes_total", &[]) > 0.0);
    assert!(delta("etcd_network_client_grpc_sent_bytes_total", &[]) > 0.0);
    assert!(delta("etcd_server_client_requests_total", &[("type", "unary")]) >= 10.0);
    assert!(delta("etcd_server_client_requests_total", &[("type", "stream")]) >= 2.0);
    // Every series of every method exists from the start, as etcd's.
    assert_eq!(
        before.sum(
            "grpc_server_handled_total",
            &[("grpc_method", "MemberList"), ("grpc_code", "Unavailable")]
        ),
        0.0
    );
    assert!(before
        .matching(
            "grpc_server_handled_total",
            &[("grpc_method", "MemberList"), ("grpc_code", "Unavailable")]
        )
        .next()
        .is_some());
    // Label sets.
    let grpc_labels = vec![
        "grpc_method".to_string(),
        "grpc_service".to_string(),
        "grpc_type".to_string(),
    ];
    assert_eq!(
        after.label_sets("grpc_server_started_total"),
        BTreeSet::from([grpc_labels.clone()])
    );
    let mut with_code = grpc_labels.clone();
    with_code.insert(0, "grpc_code".to_string());
    assert_eq!(
        after.label_sets("grpc_server_handled_total"),
        BTreeSet::from([with_code])
    );
    assert_eq!(
        after.label_sets("etcd_server_client_requests_total"),
        BTreeSet::from([vec!["client_api_version".to_string(), "type".to_string()]])
    );

    // Disk: every write was fsynced by the WAL; the backend commits durably
    // within 100 ms of going idle.
    assert!(delta("etcd_disk_wal_write_bytes_total", &[]) > 0.0);
    assert!(after.histogram_count("etcd_disk_wal_fsync_duration_seconds") >= 5.0);
    wait_scrape(port, "a durable backend commit", |s| {
        s.histogram_count("etcd_disk_backend_commit_duration_seconds") > 0.0
    });

    // etcd's buckets.
    for (name, start, factor, count) in [
        ("etcd_disk_wal_fsync_duration_seconds", 0.001, 2.0, 14),
        ("etcd_disk_backend_commit_duration_seconds", 0.001, 2.0, 14),
        ("etcd_disk_backend_snapshot_duration_seconds", 0.01, 2.0, 17),
        ("etcd_disk_backend_defrag_duration_seconds", 0.1, 2.0, 13),
        ("etcd_debugging_lease_ttl_total", 1.0, 2.0, 24),
    ] {
        let got = after.buckets(name);
        let want = exponential(start, factor, count);
        assert!(close(&got, &want), "{name}: buckets {got:?}, want {want:?}");
    }
    let handling = after.buckets("grpc_server_handling_seconds");
    let mut want = vec![
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    want.push(f64::INFINITY);
    assert!(close(&handling, &want), "handling buckets {handling:?}");

    // The defragmentation.
    assert_eq!(
        after.histogram_count("etcd_disk_backend_defrag_duration_seconds")
            - before.histogram_count("etcd_disk_backend_defrag_duration_seconds"),
        1.0
    );
    assert_eq!(after.value("etcd_disk_defrag_inflight"), 0.0);
    let defrag_ok = [("grpc_method", "Defragment"), ("grpc_code", "OK")];
    assert_eq!(delta("grpc_server_handled_total", &defrag_ok), 1.0);

    // Process metrics.
    assert!(after.value("process_resident_memory_bytes") > 0.0);
    assert!(after.value("process_open_fds") > 0.0);

    // The metrics listener: /metrics and health, nothing else.
    let from_listener = scrape(metrics_port);
    assert!(from_listener.has("etcd_server_has_leader"));
    assert_eq!(
        get(metrics_port, "/health").1,
        r#"{"health":"true","reason":""}"#
    );
    assert_eq!(get(metrics_port, "/livez").1, "ok\n");
    assert_eq!(get(metrics_port, "/readyz").1, "ok\n");
    let (status, _) = get(metrics_port, "/version");
    assert!(
        status.contains("404"),
        "/version on the metrics listener: {status}"
    );
}

#[test]
fn basic_metrics_leave_out_handling_histograms() {
    let etcd = EtcdProcess::start(Kind::Ours, &[]);
    let s = scrape(etcd.client_port());
    assert!(s.has("grpc_server_handled_total"));
    assert!(!s.has("grpc_server_handling_seconds"));
    let (status, body) = split_response(&http_get(etcd.client_port(), "/metrics").expect("answer"));
    assert!(status.contains("200"));
    assert!(body.contains("# TYPE etcd_server_has_leader gauge"));
    let head = http_get(etcd.client_port(), "/metrics").expect("answer");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head:.300}"
    );
}

/// The same workload on etcd 3.5.1 and on ours: family names, types and
/// help texts agree.
#[test]
fn family_names_types_and_help_match_etcd_3_5_1() {
    let reference = EtcdProcess::start(Kind::Ref35, &[]);
    let ours = EtcdProcess::start(Kind::Ours, &[]);
    let ctl = Etcdctl::reference(Kind::Ref35);
    for etcd in [&reference, &ours] {
        for args in [
            &["put", "a", "1"][..],
            &["get", "a"],
            &["del", "a"],
            &["lease", "grant", "100"],
        ] {
            let out = ctl.run(&etcd.endpoint(), args, None);
            assert_eq!(
                out.code,
                0,
                "etcdctl {args:?} on {:?}: {}",
                etcd.kind(),
                out.stderr
            );
        }
        // A health check moves etcd_server_health_success on both.
        assert!(etcd.is_healthy());
    }
    let theirs = scrape(reference.client_port());
    let mine = scrape(ours.client_port());
    let theirs_names: BTreeSet<&String> = theirs.types.keys().collect();
    for (name, kind) in &mine.types {
        if NOT_IN_3_5_1.contains(&name.as_str()) {
            continue;
        }
        assert!(
            theirs_names.contains(name),
            "we export {name}, etcd 3.5.1 does not"
        );
        assert_eq!(
            theirs.types.get(name),
            Some(kind),
            "type of {name} differs from etcd 3.5.1's"
        );
        assert_eq!(
            theirs.helps.get(name),
            mine.helps.get(name),
            "help of {name} differs from etcd 3.5.1's"
        );
        // The same label names (ours may have fewer series, never other labels).
        let ours_labels = mine.label_sets(name);
        let theirs_labels = theirs.label_sets(name);
        for labels in &ours_labels {
            assert!(
                theirs_labels.contains(labels) || theirs_labels.is_empty(),
                "{name}: labels {labels:?} not among etcd 3.5.1's {theirs_labels:?}"
            );
        }
    }
    for name in CLAIMED {
        assert!(theirs.has(name), "{name}: not in etcd 3.5.1's scrape");
        assert!(mine.has(name), "{name}: not in ours");
    }
    // The same counts for the same workload (ranges differ with the number
    // of /health polls while each server started: each health check reads).
    for name in [
        "etcd_mvcc_put_total",
        "etcd_mvcc_delete_total",
        "etcd_debugging_mvcc_keys_total",
        "etcd_debugging_mvcc_current_revision",
        "etcd_debugging_lease_granted_total",
        "etcd_server_has_leader",
        "etcd_server_is_leader",
    ] {
        assert_eq!(mine.value(name), theirs.value(name), "{name}");
    }
    for method in ["Put", "Range", "DeleteRange", "LeaseGrant"] {
        let labels = [("grpc_method", method), ("grpc_code", "OK")];
        assert_eq!(
            mine.sum("grpc_server_handled_total", &labels),
            theirs.sum("grpc_server_handled_total", &labels),
            "handled {method}"
        );
    }
}

// ---------------------------------------------------------------------------
// Health endpoints.

async fn raise(c: &mut Client, alarm: AlarmType, member_id: u64) {
    let mut options = AlarmOptions::new();
    options.with_member(member_id);
    bounded(
        "alarm",
        c.alarm(AlarmAction::Activate, alarm, Some(options)),
    )
    .await
    .expect("alarm activate");
}

#[test]
fn livez_readyz_and_health_with_alarms() {
    let etcd = EtcdProcess::start(Kind::Ours, &[]);
    let port = etcd.client_port();

    assert_eq!(
        get(port, "/livez"),
        ("HTTP/1.1 200 OK".into(), "ok\n".into())
    );
    assert_eq!(
        get(port, "/livez?verbose").1,
        "[+]serializable_read ok\nok\n"
    );
    assert_eq!(get(port, "/livez/serializable_read").1, "ok\n");
    assert_eq!(get(port, "/readyz").1, "ok\n");
    assert_eq!(
        get(port, "/readyz?verbose").1,
        "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\nok\n"
    );
    assert_eq!(
        get(
            port,
            "/readyz?verbose&exclude=serializable_read&exclude=no_such_check"
        )
        .1,
        "[+]data_corruption ok\n[+]linearizable_read ok\nok\n"
    );
    for check in ["data_corruption", "serializable_read", "linearizable_read"] {
        assert_eq!(
            get(port, &format!("/readyz/{check}?verbose")).1,
            format!("[+]{check} ok\nok\n")
        );
    }
    assert!(get(port, "/readyz/").0.contains("404"));
    assert!(get(port, "/livez/linearizable_read").0.contains("404"));
    let post = common_post(port, "/readyz");
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(post.contains("Method Not Allowed\n"));
    assert!(post.to_ascii_lowercase().contains("allow: get"));

    let ok = r#"{"health":"true","reason":""}"#;
    assert_eq!(get(port, "/health"), ("HTTP/1.1 200 OK".into(), ok.into()));
    assert_eq!(get(port, "/health?serializable=true").1, ok);

    let rt = runtime();
    rt.block_on(async {
        let mut c = connect(&etcd.endpoint()).await;
        let member_id = bounded("status", c.status())
            .await
            .expect("status")
            .header()
            .expect("header")
            .member_id();
        raise(&mut c, AlarmType::Nospace, member_id).await;
    });
    let nospace = "{\"health\":\"false\",\"reason\":\"ALARM NOSPACE\"}\n";
    assert_eq!(
        get(port, "/health"),
        ("HTTP/1.1 503 Service Unavailable".into(), nospace.into())
    );
    assert_eq!(get(port, "/health?serializable=true").1, nospace);
    assert_eq!(get(port, "/health?exclude=NOSPACE").1, ok);
    // NOSPACE is no corruption: readyz and livez stay ok.
    assert_eq!(get(port, "/readyz").1, "ok\n");
    assert_eq!(get(port, "/livez").1, "ok\n");

    rt.block_on(async {
        let mut c = connect(&etcd.endpoint()).await;
        let member_id = bounded("status", c.status())
            .await
            .expect("status")
            .header()
            .expect("header")
            .member_id();
        raise(&mut c, AlarmType::Corrupt, member_id).await;
    });
    assert_eq!(
        get(port, "/readyz"),
        (
            "HTTP/1.1 503 Service Unavailable".into(),
            "[-]data_corruption failed: alarm activated: CORRUPT\n[+]serializable_read ok\n[+]linearizable_read ok\n\n"
                .into()
        )
    );
    assert_eq!(
        get(port, "/readyz/data_corruption").1,
        "[-]data_corruption failed: alarm activated: CORRUPT\n\n"
    );
    assert_eq!(get(port, "/readyz?exclude=data_corruption").1, "ok\n");
    assert_eq!(
        get(port, "/health?exclude=NOSPACE").1,
        "{\"health\":\"false\",\"reason\":\"ALARM CORRUPT\"}\n"
    );
    assert_eq!(get(port, "/health?exclude=NOSPACE&exclude=CORRUPT").1, ok);

    let s = scrape(port);
    assert!(s.value("etcd_server_health_failures") >= 3.0);
    assert!(s.value("etcd_server_health_success") >= 4.0);
    assert_eq!(
        s.sum(
            "etcd_server_healthcheck",
            &[("type", "readyz"), ("name", "linearizable_read")]
        ),
        1.0
    );
    assert!(
        s.sum(
            "etcd_server_healthchecks_total",
            &[
                ("type", "readyz"),
                ("name", "data_corruption"),
                ("status", "error")
            ]
        ) >= 2.0
    );
}

/// A POST over a raw connection; the whole answer.
fn common_post(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    let _ = s.take(1 << 16).read_to_string(&mut out);
    out
}

// ---------------------------------------------------------------------------
// Three members.

#[test]
fn three_members_count_peer_traffic_and_report_no_leader() {
    let mut cluster = Cluster::start("metrics", 3, &[]);
    let ids: Vec<String> = (0..3)
        .map(|i| format!("{:x}", cluster.member_id(i)))
        .collect();
    let rt = runtime();
    rt.block_on(async {
        let mut c = connect(&cluster.endpoint(0)).await;
        for i in 0..5 {
            bounded("put", c.put(format!("p{i}"), "v", None))
                .await
                .expect("put");
        }
    });
    let leader = cluster.wait_leader(WAIT);
    let mut leaders = 0.0;
    for i in 0..3 {
        let port = cluster.client_port(i);
        // Raft traffic flows between the leader and each follower (followers
        // do not talk to each other); every stream is open.
        let s = wait_scrape(port, "peer traffic both ways", |s| {
            (0..3).filter(|&j| j != i).all(|j| {
                let talks = i == leader || j == leader;
                let sent = s.sum("etcd_network_peer_sent_bytes_total", &[("To", &ids[j])]);
                let received = s.sum(
                    "etcd_network_peer_received_bytes_total",
                    &[("From", &ids[j])],
                );
                (!talks || (sent > 0.0 && received > 0.0))
                    && s.sum(
                        "etcd_network_active_peers",
                        &[("Local", &ids[i]), ("Remote", &ids[j])],
                    ) == 1.0
            }) && s.value("etcd_debugging_mvcc_keys_total") == 5.0
        });
        assert_eq!(s.value("etcd_server_has_leader"), 1.0);
        leaders += s.value("etcd_server_is_leader");
        assert_eq!(s.types["etcd_network_peer_sent_bytes_total"], "counter");
        assert_eq!(
            s.label_sets("etcd_network_peer_sent_bytes_total"),
            BTreeSet::from([vec!["To".to_string()]])
        );
        assert_eq!(
            s.label_sets("etcd_network_active_peers"),
            BTreeSet::from([vec!["Local".to_string(), "Remote".to_string()]])
        );
    }
    assert_eq!(leaders, 1.0, "exactly one member is leader");

    // Without a quorum the survivor has no leader.
    cluster.kill9(1);
    cluster.kill9(2);
    let port = cluster.client_port(0);
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = get(port, "/health");
        if body == "{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}\n" {
            assert!(status.contains("503"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/health still says {status} {body}"
        );
        std::thread::sleep(POLL);
    }
    let s = scrape(port);
    assert_eq!(s.value("etcd_server_has_leader"), 0.0);
    assert_eq!(
        s.sum("etcd_network_active_peers", &[("Remote", &ids[1])]),
        0.0
    );
    assert!(s.sum("etcd_network_disconnected_peers_total", &[]) >= 1.0);
    // A local read still works; livez is about the process, readyz about the cluster.
    assert_eq!(
        get(port, "/health?serializable=true").1,
        r#"{"health":"true","reason":""}"#
    );
    assert_eq!(get(port, "/livez").1, "ok\n");
    let (status, body) = get(port, "/readyz");
    assert!(status.contains("503"), "{status}");
    assert!(
        body.starts_with("[+]data_corruption ok\n[+]serializable_read ok\n[-]linearizable_read failed: etcdserver: "),
        "{body}"
    );
    assert!(body.ends_with("\n\n"), "{body:?}");
}
