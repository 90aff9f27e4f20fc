//! The `/metrics` body: the families measured on the way (the `metrics`
//! folder) and those read from the server's state at scrape time (leader,
//! indices, revisions, key and watcher counts, db size, mvcc op counters,
//! active peers, file descriptors), so the hot path pays nothing for them.
//!
//! Where each family is measured is listed in docs/ARCHITECTURE.md.
//!
//! Left out: Go runtime metrics (`go_*`), the v2 store's
//! (`etcd_debugging_store_*`), bbolt internals (`etcd_debugging_disk_backend_commit_{rebalance,spill,write}_*`),
//! the gRPC proxy's, peer round-trip time (our peer protocol has no prober),
//! and gzip encoding of the scrape.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::server::EtcdServer;

/// The text exposition format etcd serves (Prometheus 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The body of `/metrics`: every family, sorted by name, in the text format.
pub fn render(server: &EtcdServer) -> String {
    server.metrics().encode(|| scrape_time(server))
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
    let status = server.status();
    let leader = status.leader;
    let bool_value = |b: bool| if b { 1.0 } else { 0.0 };
    let quota = match server.config().quota_backend_bytes {
        0 => crate::state::quota::DEFAULT_QUOTA_BYTES,
        q => q,
    };
    let ops = &server.metrics().mvcc;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let member_hex = format!("{:x}", status.member_id);
    let mut out = vec![
        gauge(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            bool_value(leader != 0),
        ),
        gauge(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            bool_value(leader == status.member_id),
        ),
        gauge(
            "etcd_server_is_learner",
            "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            bool_value(status.is_learner),
        ),
        gauge(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            status.commit_index as f64,
        ),
        gauge(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            status.applied_index as f64,
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
            status.db_size_bytes as f64,
        ),
        gauge(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            status.db_size_in_use_bytes as f64,
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
            status.keys as f64,
        ),
        gauge(
            "etcd_debugging_mvcc_current_revision",
            "The current revision of store.",
            status.revision as f64,
        ),
        gauge(
            "etcd_debugging_auth_revision",
            "The current revision of auth store.",
            server.auth().read().revision() as f64,
        ),
        gauge(
            "etcd_debugging_mvcc_compact_revision",
            "The revision of the last compaction in store.",
            status.compact_revision as f64,
        ),
        counter(
            "etcd_debugging_mvcc_db_compaction_keys_total",
            "Total number of db keys compacted.",
            status.compacted_revisions_total,
        ),
        gauge(
            "etcd_debugging_mvcc_watcher_total",
            "Total number of watchers.",
            status.watchers as f64,
        ),
    ];
    if let Some(version) = &status.cluster_version {
        out.push(labelled_gauge(
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
            &[("cluster_version", &major_minor(version))],
        ));
    }
    let peers = &status.peers;
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

    #[test]
    fn cluster_version_label_is_major_minor() {
        assert_eq!(major_minor("3.6.0"), "3.6");
        assert_eq!(major_minor("3.5"), "3.5");
    }
}
