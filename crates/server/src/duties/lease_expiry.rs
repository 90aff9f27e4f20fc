//! The leader's lease loop: every 500 ms it proposes the revocation of
//! expired leases (at etcd's rate) and, with checkpointing on, the remaining
//! TTLs of long leases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::etcdserverpb::{InternalRaftRequest, LeaseRevokeRequest};
use api::EtcdError;

use crate::server::EtcdServer;

/// How often the leader looks for expired leases and due checkpoints (etcd: 500 ms).
const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// Expired leases revoked per check at most (etcd: half the revoke rate per 500 ms).
const REVOKES_PER_CHECK_MAX: usize = lease::REVOKE_RATE_PER_SEC / 2;

/// The leader's loop: proposes the revocation of expired leases and, with
/// checkpointing on, the remaining TTLs of long leases.
pub async fn run_expiry(server: Arc<EtcdServer>, stop: tokio::sync::watch::Receiver<bool>) {
    let tick = tokio::time::interval(EXPIRY_CHECK_INTERVAL);
    crate::server::on_ticks_as_leader(server, tick, stop, |server| async move {
        let now = Instant::now();
        for id in server.lessor().expired(now, REVOKES_PER_CHECK_MAX) {
            let server = server.clone();
            tokio::spawn(async move {
                let revoke = InternalRaftRequest {
                    lease_revoke: Some(LeaseRevokeRequest { id }),
                    ..Default::default()
                };
                match server.propose(revoke).await {
                    Ok(_) => server.metrics().lease_expired.inc(),
                    Err(EtcdError::LeaseNotFound) => {}
                    Err(e) => tracing::warn!(
                        lease_id = %format!("{id:016x}"),
                        error = %e,
                        "failed to revoke an expired lease; will retry"
                    ),
                }
            });
        }
        let due = server
            .lessor()
            .due_checkpoints(now, lease::CHECKPOINT_BATCH_MAX);
        if !due.is_empty() {
            server.propose_lease_checkpoints(due);
        }
    })
    .await;
}
