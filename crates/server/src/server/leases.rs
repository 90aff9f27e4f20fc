//! Keep-alive and TimeToLive, which only the leader's (primary) lessor can
//! answer: a follower forwards them over the peer port
//! (`etcdrs.peer.v1.Leases`), as etcd forwards over its peer HTTP `/leases`
//! endpoints; and the lease checkpoints the leader proposes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::etcdserverpb::{
    InternalRaftRequest, LeaseCheckpoint, LeaseCheckpointRequest, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse, ResponseHeader,
};
use api::peerpb::leases_client::LeasesClient;
use api::peerpb::{LeaseRenewRequest, LeaseTimeToLiveForward};
use api::EtcdError;
use lease::LeaseError;
use tonic::Status;

use crate::server::EtcdServer;
use crate::state::leases::lease_error;
use crate::transport::PROTOCOL_VERSION;

/// How long a request waits between attempts to reach the primary lessor.
const PRIMARY_RETRY: Duration = Duration::from_millis(50);

/// What the primary lessor answered, or why another attempt is needed.
pub(crate) enum Attempt<T> {
    Done(Result<T, EtcdError>),
    /// Not the primary right now (no leader, a leader not yet promoted, a
    /// forward that failed): try again until the deadline.
    Retry(EtcdError),
}

impl EtcdServer {
    /// A keep-alive: the lease's granted TTL, from the leader's lessor.
    pub async fn lease_renew(self: &Arc<Self>, id: i64) -> Result<i64, EtcdError> {
        self.with_primary(|server| async move {
            if server.raft_status.leader() == server.member_id {
                server.renew_local(id).await
            } else {
                server.forward_renew(id).await
            }
        })
        .await
    }

    /// TimeToLive, from the leader's lessor.
    pub async fn lease_time_to_live(
        self: &Arc<Self>,
        req: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, EtcdError> {
        self.with_primary(|server| async move {
            if server.raft_status.leader() == server.member_id {
                server.time_to_live_local(&req).await
            } else {
                server.forward_time_to_live(req).await
            }
        })
        .await
    }

    async fn with_primary<T, F, Fut>(self: &Arc<Self>, attempt: F) -> Result<T, EtcdError>
    where
        F: Fn(Arc<Self>) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        loop {
            // A forward to a leader that stopped answering is bounded too.
            let reason = match tokio::time::timeout_at(deadline, attempt(self.clone())).await {
                Ok(Attempt::Done(result)) => return result,
                Ok(Attempt::Retry(reason)) => reason,
                Err(_) => return Err(EtcdError::Timeout),
            };
            if tokio::time::Instant::now() + PRIMARY_RETRY >= deadline {
                return Err(match reason {
                    EtcdError::NoLeader => EtcdError::NoLeader,
                    _ => EtcdError::Timeout,
                });
            }
            tokio::time::sleep(PRIMARY_RETRY).await;
        }
    }

    /// Waits until this member has applied what raft has committed, so a
    /// lease granted just before is known (etcd's waitAppliedIndex).
    async fn wait_applied_commit(&self) {
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        let _ = self
            .wait_applied(self.raft_status.commit_index(), deadline)
            .await;
    }

    pub(crate) async fn renew_local(self: &Arc<Self>, id: i64) -> Attempt<i64> {
        let mut result = self.lessor.renew(id, Instant::now());
        if result == Err(LeaseError::NotFound) {
            self.wait_applied_commit().await;
            result = self.lessor.renew(id, Instant::now());
        }
        match result {
            Ok((ttl, clear_checkpoint)) => {
                self.metrics.lease_renewed.inc();
                if clear_checkpoint {
                    self.propose_lease_checkpoints(vec![(id, 0)]);
                }
                Attempt::Done(Ok(ttl))
            }
            Err(LeaseError::NotPrimary) => Attempt::Retry(EtcdError::NotLeader),
            Err(e) => Attempt::Done(Err(lease_error(e))),
        }
    }

    pub(crate) async fn time_to_live_local(
        &self,
        req: &LeaseTimeToLiveRequest,
    ) -> Attempt<LeaseTimeToLiveResponse> {
        if !self.lessor.is_primary() {
            return Attempt::Retry(EtcdError::NotLeader);
        }
        let mut view = self.lessor.lookup(req.id, Instant::now());
        if view.is_none() {
            self.wait_applied_commit().await;
            view = self.lessor.lookup(req.id, Instant::now());
        }
        let Some(view) = view else {
            return Attempt::Done(Err(EtcdError::LeaseNotFound));
        };
        let Some(remaining) = view.remaining else {
            return Attempt::Retry(EtcdError::NotLeader);
        };
        Attempt::Done(Ok(LeaseTimeToLiveResponse {
            header: Some(ResponseHeader::default()),
            id: req.id,
            // etcd truncates the remaining time to whole seconds.
            ttl: remaining.as_secs() as i64,
            granted_ttl: view.ttl,
            keys: if req.keys { view.keys } else { Vec::new() },
        }))
    }

    async fn forward_renew(&self, id: i64) -> Attempt<i64> {
        let mut client = match self.dial_leader().await {
            Ok(channel) => LeasesClient::new(channel),
            Err(e) => return Attempt::Retry(e),
        };
        let call = client.renew(LeaseRenewRequest {
            version: PROTOCOL_VERSION,
            id,
        });
        forwarded(call.await.map(|r| r.into_inner().ttl))
    }

    async fn forward_time_to_live(
        &self,
        request: LeaseTimeToLiveRequest,
    ) -> Attempt<LeaseTimeToLiveResponse> {
        let mut client = match self.dial_leader().await {
            Ok(channel) => LeasesClient::new(channel),
            Err(e) => return Attempt::Retry(e),
        };
        let call = client.time_to_live(LeaseTimeToLiveForward {
            version: PROTOCOL_VERSION,
            request: Some(request),
        });
        forwarded(call.await.map(tonic::Response::into_inner))
    }

    /// Proposes lease checkpoints (lease ID, remaining TTL) without waiting
    /// for them.
    pub fn propose_lease_checkpoints(self: &Arc<Self>, checkpoints: Vec<(i64, i64)>) {
        let server = self.clone();
        tokio::spawn(async move {
            let req = InternalRaftRequest {
                lease_checkpoint: Some(LeaseCheckpointRequest {
                    checkpoints: checkpoints
                        .into_iter()
                        .map(|(id, remaining_ttl)| LeaseCheckpoint { id, remaining_ttl })
                        .collect(),
                }),
                ..Default::default()
            };
            if let Err(e) = server.propose(req).await {
                tracing::warn!(error = %e, "failed to checkpoint leases");
            }
        });
    }
}

/// The leader's answer to a forwarded request: NotFound is the lease's
/// answer; anything else (not the primary any more, unreachable) is retried.
fn forwarded<T>(answer: Result<T, Status>) -> Attempt<T> {
    match answer {
        Ok(v) => Attempt::Done(Ok(v)),
        Err(status) if status.code() == tonic::Code::NotFound => {
            Attempt::Done(Err(EtcdError::LeaseNotFound))
        }
        Err(_) => Attempt::Retry(EtcdError::NotLeader),
    }
}
