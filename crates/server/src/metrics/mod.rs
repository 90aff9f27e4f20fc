//! The metrics measured on the way, with etcd's names, types, help texts,
//! labels and histogram buckets, so that etcd's dashboards and alerts work
//! unchanged: prometheus handles kept in [`Metrics`], updated with one atomic
//! operation where the thing happens (raft thread, applier, peer transport,
//! gRPC middleware).
//!
//! The values read at scrape time (leader, indices, revisions, key and
//! watcher counts, db size, active peers, file descriptors) are built by the
//! client edge's `/metrics` handler from the server's state, so the hot path
//! pays nothing; [`Metrics::encode`] writes both kinds out.
//!
//! May import: `config` (the metrics level). Every other folder may import it.
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

use prometheus::proto::MetricFamily;
use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use crate::config::MetricsLevel;

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
    /// By `Reason`, the error's text, as etcd labels it.
    pub learner_promote_failures: IntCounterVec,
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
            learner_promote_failures: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "etcd_server_learner_promote_failures",
                        "The total number of failed learner promotions (likely learner not ready) while this member is leader.",
                    ),
                    &["Reason"],
                )
                .expect("valid metric"),
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

    /// The text exposition of every family measured on the way plus
    /// `read_at_scrape`'s, sorted by name; the scrape is counted (promhttp's
    /// `promhttp_metric_handler_requests_*`).
    pub fn encode(&self, read_at_scrape: impl FnOnce() -> Vec<MetricFamily>) -> String {
        self.scrapes_in_flight.inc();
        let _in_flight = InFlight(&self.scrapes_in_flight);
        let mut families = self.registry.gather();
        families.extend(read_at_scrape());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        match TextEncoder::new().encode(&families, &mut out) {
            Ok(()) => {
                self.scrapes.with_label_values(&["200"]).inc();
                String::from_utf8(out).unwrap_or_default()
            }
            Err(e) => {
                self.scrapes.with_label_values(&["500"]).inc();
                tracing::warn!(error = %e, "cannot encode metrics");
                String::new()
            }
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
}
