//! Prometheus metrics with etcd's names, types, help texts, labels and
//! histogram buckets, so that etcd's dashboards and alerts work unchanged.
//!
//! Two kinds of values:
//! - **measured on the way** (counters, histograms, a few gauges): prometheus
//!   handles kept in [`Metrics`], updated with one atomic operation where the
//!   thing happens (raft thread, applier, peer transport, gRPC middleware);
//! - **read at scrape time** (leader, indices, revisions, key and watcher
//!   counts, db size, mvcc op counters, active peers, file descriptors): built
//!   by [`render`] from the server's state, so the hot path pays nothing.
//!
//! Where each family is measured is listed in docs/ARCHITECTURE.md.
//!
//! Left out: Go runtime metrics (`go_*`), the v2 store's
//! (`etcd_debugging_store_*`), bbolt internals (`etcd_debugging_disk_backend_commit_{rebalance,spill,write}_*`),
//! the gRPC proxy's, peer round-trip time (our peer protocol has no prober),
//! and gzip encoding of the scrape.

pub mod grpc;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use crate::config::MetricsLevel;
use crate::server::EtcdServer;

/// The text exposition format etcd serves (Prometheus 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Counters of the mvcc operations this member served or applied (etcd
/// counts them per mvcc transaction: puts, deletes, ranges including txn
/// compares, and a txn when it did more than one of those).
#[derive(Default)]
pub struct MvccOps {
    pub ranges: AtomicU64,
    pub puts: AtomicU64,
    pub deletes: AtomicU64,
    pub txns: AtomicU64,
    /// Key and value bytes of the puts.
    pub put_bytes: AtomicU64,
}

impl MvccOps {
    /// Records one mvcc transaction that did `ranges` ranges (compares
    /// included), `puts` puts of `put_bytes` bytes and `deletes` deletes.
    pub fn record(&self, ranges: u64, puts: u64, deletes: u64, put_bytes: u64) {
        if ranges > 0 {
            self.ranges.fetch_add(ranges, Ordering::Relaxed);
        }
        if puts > 0 {
            self.puts.fetch_add(puts, Ordering::Relaxed);
            self.put_bytes.fetch_add(put_bytes, Ordering::Relaxed);
        }
        if deletes > 0 {
            self.deletes.fetch_add(deletes, Ordering::Relaxed);
        }
        if ranges + puts + deletes > 1 {
            self.txns.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a txn request from its compares and the response ops it ran
    /// (nested txns included).
    pub fn record_txn(
        &self,
        req: &api::etcdserverpb::TxnRequest,
        resp: &api::etcdserverpb::TxnResponse,
    ) {
        let mut counts = OpCounts::default();
        counts.txn(req, resp);
        self.record(counts.ranges, counts.puts, counts.deletes, counts.put_bytes);
    }
}

#[derive(Default)]
struct OpCounts {
    ranges: u64,
    puts: u64,
    deletes: u64,
    put_bytes: u64,
}

impl OpCounts {
    fn txn(&mut self, req: &api::etcdserverpb::TxnRequest, resp: &api::etcdserverpb::TxnResponse) {
        use api::etcdserverpb::request_op::Request as Req;
        use api::etcdserverpb::response_op::Response as Resp;
        self.ranges += req.compare.len() as u64;
        let ops = if resp.succeeded {
            &req.success
        } else {
            &req.failure
        };
        for (op, result) in ops.iter().zip(&resp.responses) {
            match (&op.request, &result.response) {
                (Some(Req::RequestRange(_)), _) => self.ranges += 1,
                (Some(Req::RequestPut(p)), _) => {
                    self.puts += 1;
                    self.put_bytes += (p.key.len() + p.value.len()) as u64;
                }
                (Some(Req::RequestDeleteRange(_)), _) => self.deletes += 1,
                (Some(Req::RequestTxn(inner_req)), Some(Resp::ResponseTxn(inner_resp))) => {
                    self.txn(inner_req, inner_resp)
                }
                _ => {}
            }
        }
    }
}

/// Peer transport metrics (`etcd_network_*`), labelled by member ID in hex.
#[derive(Clone)]
pub struct PeerMetrics {
    pub sent_bytes: IntCounterVec,
    pub received_bytes: IntCounterVec,
    pub sent_failures: IntCounterVec,
    pub disconnected: IntCounterVec,
    pub snapshot_send_success: IntCounterVec,
    pub snapshot_send_failures: IntCounterVec,
    pub snapshot_receive_success: IntCounterVec,
}

impl Default for PeerMetrics {
    /// Metrics registered nowhere (unit tests of the transport).
    fn default() -> Self {
        PeerMetrics::new(&Registry::new())
    }
}

impl PeerMetrics {
    fn new(registry: &Registry) -> PeerMetrics {
        let vec = |name: &str, help: &str, label: &str| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric"),
            )
        };
        let pair = |name: &str, help: &str| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), &["Local", "Remote"])
                    .expect("valid metric"),
            )
        };
        PeerMetrics {
            sent_bytes: vec(
                "etcd_network_peer_sent_bytes_total",
                "The total number of bytes sent to peers.",
                "To",
            ),
            received_bytes: vec(
                "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.",
                "From",
            ),
            sent_failures: vec(
                "etcd_network_peer_sent_failures_total",
                "The total number of send failures from peers.",
                "To",
            ),
            disconnected: pair(
                "etcd_network_disconnected_peers_total",
                "The total number of disconnected peers.",
            ),
            snapshot_send_success: vec(
                "etcd_network_snapshot_send_success",
                "Total number of successful snapshot sends",
                "To",
            ),
            snapshot_send_failures: vec(
                "etcd_network_snapshot_send_failures",
                "Total number of snapshot send failures",
                "To",
            ),
            snapshot_receive_success: vec(
                "etcd_network_snapshot_receive_success",
                "Total number of successful snapshot receives",
                "From",
            ),
        }
    }
}

/// Every metric measured on the way. One per server; cheap to share in an `Arc`.
pub struct Metrics {
    registry: Registry,
    // etcdserver
    pub leader_changes: IntCounter,
    pub heartbeat_send_failures: IntCounter,
    pub slow_applies: IntCounter,
    pub snapshot_apply_in_progress: IntGauge,
    pub proposals_pending: IntGauge,
    pub proposals_failed: IntCounter,
    pub slow_read_indexes: IntCounter,
    pub read_indexes_failed: IntCounter,
    pub lease_expired: IntCounter,
    pub learner_promote_successes: IntCounter,
    // health endpoints
    pub health_success: IntCounter,
    pub health_failures: IntCounter,
    pub healthcheck: IntGaugeVec,
    pub healthchecks_total: IntCounterVec,
    // disk
    pub wal_fsync: Histogram,
    pub wal_write_bytes: IntGauge,
    pub backend_commit: Histogram,
    pub backend_snapshot: Histogram,
    pub backend_defrag: Histogram,
    pub defrag_inflight: IntGauge,
    pub hash: Histogram,
    pub hash_rev: Histogram,
    // lease
    pub lease_granted: IntCounter,
    pub lease_revoked: IntCounter,
    pub lease_renewed: IntCounter,
    pub lease_ttl: Histogram,
    // mvcc / watch
    pub mvcc: MvccOps,
    pub watch_streams: IntGauge,
    // network
    pub peer: PeerMetrics,
    pub grpc: Arc<grpc::GrpcMetrics>,
    // the /metrics handler itself (promhttp's)
    scrapes: IntCounterVec,
    scrapes_in_flight: IntGauge,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    // Names are constants of this module: a clash is a programmer error.
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl Metrics {
    pub fn new(level: MetricsLevel) -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        let counter = |name: &str, help: &str| {
            register(r, IntCounter::new(name, help).expect("valid metric"))
        };
        let gauge =
            |name: &str, help: &str| register(r, IntGauge::new(name, help).expect("valid metric"));
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            register(
                r,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                    .expect("valid metric"),
            )
        };
        let exp = |start: f64, factor: f64, count: usize| {
            exponential_buckets(start, factor, count).expect("valid buckets")
        };
        #[cfg(target_os = "linux")]
        {
            let _ = registry.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ));
        }
        let scrapes = register(
            r,
            IntCounterVec::new(
                Opts::new(
                    "promhttp_metric_handler_requests_total",
                    "Total number of scrapes by HTTP status code.",
                ),
                &["code"],
            )
            .expect("valid metric"),
        );
        for code in ["200", "500", "503"] {
            scrapes.with_label_values(&[code]);
        }
        Metrics {
            leader_changes: counter(
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            ),
            heartbeat_send_failures: counter(
                "etcd_server_heartbeat_send_failures_total",
                "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
            ),
            slow_applies: counter(
                "etcd_server_slow_apply_total",
                "The total number of slow apply requests (likely overloaded from slow disk).",
            ),
            snapshot_apply_in_progress: gauge(
                "etcd_server_snapshot_apply_in_progress_total",
                "1 if the server is applying the incoming snapshot. 0 if none.",
            ),
            proposals_pending: gauge(
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            ),
            proposals_failed: counter(
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            slow_read_indexes: counter(
                "etcd_server_slow_read_indexes_total",
                "The total number of pending read indexes not in sync with leader's or timed out read index requests.",
            ),
            read_indexes_failed: counter(
                "etcd_server_read_indexes_failed_total",
                "The total number of failed read indexes seen.",
            ),
            lease_expired: counter(
                "etcd_debugging_server_lease_expired_total",
                "The total number of expired leases.",
            ),
            learner_promote_successes: counter(
                "etcd_server_learner_promote_successes",
                "The total number of successful learner promotions while this member is leader.",
            ),
            health_success: counter(
                "etcd_server_health_success",
                "The total number of successful health checks",
            ),
            health_failures: counter(
                "etcd_server_health_failures",
                "The total number of failed health checks",
            ),
            healthcheck: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "etcd_server_healthcheck",
                        "The result of each kind of healthcheck.",
                    ),
                    &["type", "name"],
                )
                .expect("valid metric"),
            ),
            healthchecks_total: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "etcd_server_healthchecks_total",
                        "The total number of each kind of healthcheck.",
                    ),
                    &["type", "name", "status"],
                )
                .expect("valid metric"),
            ),
            wal_fsync: histogram(
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
                exp(0.001, 2.0, 14),
            ),
            wal_write_bytes: gauge(
                "etcd_disk_wal_write_bytes_total",
                "Total number of bytes written in WAL.",
            ),
            backend_commit: histogram(
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
                exp(0.001, 2.0, 14),
            ),
            backend_snapshot: histogram(
                "etcd_disk_backend_snapshot_duration_seconds",
                "The latency distribution of backend snapshots.",
                exp(0.01, 2.0, 17),
            ),
            backend_defrag: histogram(
                "etcd_disk_backend_defrag_duration_seconds",
                "The latency distribution of backend defragmentation.",
                exp(0.1, 2.0, 13),
            ),
            defrag_inflight: gauge(
                "etcd_disk_defrag_inflight",
                "Whether or not defrag is active on the member. 1 means active, 0 means not.",
            ),
            hash: histogram(
                "etcd_mvcc_hash_duration_seconds",
                "The latency distribution of storage hash operation.",
                exp(0.01, 2.0, 15),
            ),
            hash_rev: histogram(
                "etcd_mvcc_hash_rev_duration_seconds",
                "The latency distribution of storage hash by revision operation.",
                exp(0.01, 2.0, 15),
            ),
            lease_granted: counter(
                "etcd_debugging_lease_granted_total",
                "The total number of granted leases.",
            ),
            lease_revoked: counter(
                "etcd_debugging_lease_revoked_total",
                "The total number of revoked leases.",
            ),
            lease_renewed: counter(
                "etcd_debugging_lease_renewed_total",
                "The number of renewed leases seen by the leader.",
            ),
            lease_ttl: histogram(
                "etcd_debugging_lease_ttl_total",
                "Bucketed histogram of lease TTLs.",
                exp(1.0, 2.0, 24),
            ),
            mvcc: MvccOps::default(),
            watch_streams: gauge(
                "etcd_debugging_mvcc_watch_stream_total",
                "Total number of watch streams.",
            ),
            peer: PeerMetrics::new(r),
            grpc: Arc::new(grpc::GrpcMetrics::new(r, level)),
            scrapes,
            scrapes_in_flight: gauge(
                "promhttp_metric_handler_requests_in_flight",
                "Current number of scrapes being served.",
            ),
            registry,
        }
    }
}

/// Marks a scrape in flight for as long as it lives.
struct InFlight<'a>(&'a IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The body of `/metrics`: every family, sorted by name, in the text format.
pub fn render(server: &EtcdServer) -> String {
    let metrics = &server.metrics;
    metrics.scrapes_in_flight.inc();
    let _in_flight = InFlight(&metrics.scrapes_in_flight);
    let mut families = metrics.registry.gather();
    families.extend(scrape_time(server));
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out = Vec::new();
    match TextEncoder::new().encode(&families, &mut out) {
        Ok(()) => {
            metrics.scrapes.with_label_values(&["200"]).inc();
            String::from_utf8(out).unwrap_or_default()
        }
        Err(e) => {
            metrics.scrapes.with_label_values(&["500"]).inc();
            tracing::warn!(error = %e, "cannot encode metrics");
            String::new()
        }
    }
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut l = LabelPair::default();
            l.set_name(name.to_string());
            l.set_value(value.to_string());
            l
        })
        .collect()
}

fn gauge_metric(pairs: &[(&str, &str)], value: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::from_gauge(g);
    m.set_label(labels(pairs));
    m
}

fn gauge(name: &str, help: &str, value: f64) -> MetricFamily {
    family(
        name,
        help,
        MetricType::GAUGE,
        vec![gauge_metric(&[], value)],
    )
}

fn counter(name: &str, help: &str, value: u64) -> MetricFamily {
    let mut c = Counter::default();
    c.set_value(value as f64);
    let mut m = Metric::default();
    m.set_counter(c);
    family(name, help, MetricType::COUNTER, vec![m])
}

fn labelled_gauge(name: &str, help: &str, pairs: &[(&str, &str)]) -> MetricFamily {
    family(
        name,
        help,
        MetricType::GAUGE,
        vec![gauge_metric(pairs, 1.0)],
    )
}

/// `3.6.0` → `3.6`, the form etcd labels the cluster version with.
fn major_minor(version: &str) -> String {
    version.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
}

/// The families read from the server's state at scrape time.
fn scrape_time(server: &EtcdServer) -> Vec<MetricFamily> {
    let leader = server.raft_status.leader();
    let bool_value = |b: bool| if b { 1.0 } else { 0.0 };
    let quota = match server.cfg.quota_backend_bytes {
        0 => crate::state::quota::DEFAULT_QUOTA_BYTES,
        q => q,
    };
    let store = &server.store;
    let ops = &server.metrics.mvcc;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let member_hex = format!("{:x}", server.member_id);
    let mut out = vec![
        gauge(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            bool_value(leader != 0),
        ),
        gauge(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            bool_value(leader == server.member_id),
        ),
        gauge(
            "etcd_server_is_learner",
            "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            bool_value(server.is_learner()),
        ),
        gauge(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            server.raft_status.commit_index() as f64,
        ),
        gauge(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            server.applied_index() as f64,
        ),
        gauge(
            "etcd_server_quota_backend_bytes",
            "Current backend storage quota size in bytes.",
            quota as f64,
        ),
        labelled_gauge(
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
            &[("server_id", &member_hex)],
        ),
        labelled_gauge(
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version.",
            &[("server_version", datadir::membership::SERVER_VERSION)],
        ),
        gauge(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            store.db_size_bytes() as f64,
        ),
        gauge(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            store.db_size_in_use_bytes() as f64,
        ),
        counter(
            "etcd_mvcc_range_total",
            "Total number of ranges seen by this member.",
            load(&ops.ranges),
        ),
        counter(
            "etcd_debugging_mvcc_range_total",
            "Total number of ranges seen by this member.",
            load(&ops.ranges),
        ),
        counter(
            "etcd_mvcc_put_total",
            "Total number of puts seen by this member.",
            load(&ops.puts),
        ),
        counter(
            "etcd_mvcc_delete_total",
            "Total number of deletes seen by this member.",
            load(&ops.deletes),
        ),
        counter(
            "etcd_mvcc_txn_total",
            "Total number of txns seen by this member.",
            load(&ops.txns),
        ),
        gauge(
            "etcd_debugging_mvcc_total_put_size_in_bytes",
            "The total size of put kv pairs seen by this member.",
            load(&ops.put_bytes) as f64,
        ),
        gauge(
            "etcd_debugging_mvcc_keys_total",
            "Total number of keys.",
            store.live_keys() as f64,
        ),
        gauge(
            "etcd_debugging_mvcc_current_revision",
            "The current revision of store.",
            store.current_revision() as f64,
        ),
        gauge(
            "etcd_debugging_mvcc_compact_revision",
            "The revision of the last compaction in store.",
            store.compact_revision() as f64,
        ),
        counter(
            "etcd_debugging_mvcc_db_compaction_keys_total",
            "Total number of db keys compacted.",
            store.compacted_revisions_total(),
        ),
        gauge(
            "etcd_debugging_mvcc_watcher_total",
            "Total number of watchers.",
            server.watch_hub.len() as f64,
        ),
    ];
    if let Some(version) = server.cluster.version() {
        out.push(labelled_gauge(
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
            &[("cluster_version", &major_minor(&version))],
        ));
    }
    let peers = server.transport.peer_states();
    if !peers.is_empty() {
        let metrics = peers
            .iter()
            .map(|(id, active)| {
                gauge_metric(
                    &[("Local", &member_hex), ("Remote", &format!("{id:x}"))],
                    bool_value(*active),
                )
            })
            .collect();
        out.push(family(
            "etcd_network_active_peers",
            "The current number of active peer connections.",
            MetricType::GAUGE,
            metrics,
        ));
    }
    out.extend(os_families());
    out
}

/// etcd's `os_fd_*` gauges and Go's `process_virtual_memory_max_bytes`, which
/// the prometheus crate's process collector does not export.
#[cfg(target_os = "linux")]
fn os_families() -> Vec<MetricFamily> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        out.push(gauge(
            "os_fd_used",
            "The number of used file descriptors.",
            entries.count() as f64,
        ));
    }
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let limit = |prefix: &str| -> Option<f64> {
        let line = limits.lines().find(|l| l.starts_with(prefix))?;
        let soft = line[prefix.len()..].split_whitespace().next()?;
        Some(if soft == "unlimited" {
            u64::MAX as f64
        } else {
            soft.parse().ok()?
        })
    };
    if let Some(fds) = limit("Max open files") {
        out.push(gauge("os_fd_limit", "The file descriptor limit.", fds));
    }
    if let Some(bytes) = limit("Max address space") {
        out.push(gauge(
            "process_virtual_memory_max_bytes",
            "Maximum amount of virtual memory available in bytes.",
            bytes,
        ));
    }
    out
}

#[cfg(not(target_os = "linux"))]
fn os_families() -> Vec<MetricFamily> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::etcdserverpb::{
        request_op, response_op, Compare, PutRequest, RangeRequest, RequestOp, ResponseOp,
        TxnRequest, TxnResponse,
    };

    #[test]
    fn txn_counts_compares_ops_and_nested_txns() {
        let put = |k: &str, v: &str| RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: k.into(),
                value: v.into(),
                ..Default::default()
            })),
        };
        let range = RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest::default())),
        };
        let nested_req = TxnRequest {
            compare: vec![Compare::default()],
            success: vec![put("c", "d")],
            ..Default::default()
        };
        let req = TxnRequest {
            compare: vec![Compare::default(), Compare::default()],
            success: vec![
                put("ab", "cde"),
                range,
                RequestOp {
                    request: Some(request_op::Request::RequestTxn(nested_req)),
                },
            ],
            failure: vec![put("x", "y")],
        };
        let resp = TxnResponse {
            succeeded: true,
            responses: vec![
                ResponseOp::default(),
                ResponseOp::default(),
                ResponseOp {
                    response: Some(response_op::Response::ResponseTxn(TxnResponse {
                        succeeded: true,
                        responses: vec![ResponseOp::default()],
                        ..Default::default()
                    })),
                },
            ],
            ..Default::default()
        };
        let ops = MvccOps::default();
        ops.record_txn(&req, &resp);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(
            (get(&ops.ranges), get(&ops.puts), get(&ops.deletes)),
            (4, 2, 0)
        );
        assert_eq!((get(&ops.txns), get(&ops.put_bytes)), (1, 7));
        // A single put is not a txn.
        ops.record(0, 1, 0, 2);
        assert_eq!(get(&ops.txns), 1);
    }

    #[test]
    fn cluster_version_label_is_major_minor() {
        assert_eq!(major_minor("3.6.0"), "3.6");
        assert_eq!(major_minor("3.5"), "3.5");
    }
}
