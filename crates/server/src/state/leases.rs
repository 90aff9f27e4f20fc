//! Leases on the server: recovering the lessor from the backend, the
//! leader's expiry and checkpoint loop, and keep-alive / TimeToLive, which
//! only the leader's (primary) lessor can answer — a follower forwards them
//! over the peer port (`etcdrs.peer.v1.Leases`), as etcd forwards over its
//! peer HTTP `/leases` endpoints.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use api::etcdserverpb::{
    InternalRaftRequest, LeaseCheckpoint, LeaseCheckpointRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, RangeRequest, ResponseHeader,
};
use api::peerpb::leases_client::LeasesClient;
use api::peerpb::leases_server::Leases;
use api::peerpb::{LeaseRenewRequest, LeaseRenewResponse, LeaseTimeToLiveForward};
use api::EtcdError;
use lease::{LeaseError, LeaseRecord, Lessor};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::peer::PROTOCOL_VERSION;
use crate::server::EtcdServer;

/// How often the leader looks for expired leases and due checkpoints (etcd: 500 ms).
const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// Expired leases revoked per check at most (etcd: half the revoke rate per 500 ms).
const REVOKES_PER_CHECK_MAX: usize = lease::REVOKE_RATE_PER_SEC / 2;
/// Keys read per range while rebuilding lease attachments. A page holds its
/// values in memory: 10,000 keys of 50 kB values made a 1.1 GB member peak at
/// 690 MB RSS while it started; 256 keep a page to a few MB in common cases.
const RECOVER_PAGE_KEYS: i64 = 256;
/// How long a request waits between attempts to reach the primary lessor.
const PRIMARY_RETRY: Duration = Duration::from_millis(50);

/// Lets the backend check that a put's lease exists.
pub struct LessorLookup(pub Arc<Lessor>);

impl mvcc::LeaseLookup for LessorLookup {
    fn lease_exists(&self, id: i64) -> bool {
        self.0.exists(id)
    }
}

/// A lease row as the backend stores it (etcd's leasepb.Lease).
pub fn encode_record(r: &LeaseRecord) -> Vec<u8> {
    api::leasepb::Lease {
        id: r.id,
        ttl: r.ttl,
        remaining_ttl: r.remaining_ttl,
    }
    .encode_to_vec()
}

pub fn lease_error(e: LeaseError) -> EtcdError {
    match e {
        LeaseError::NotFound => EtcdError::LeaseNotFound,
        LeaseError::Exists => EtcdError::LeaseExist,
        LeaseError::TtlTooLarge => EtcdError::LeaseTtlTooLarge,
        LeaseError::NotPrimary => EtcdError::NotLeader,
    }
}

/// Rebuilds the lessor from the backend: the lease rows, and every live key
/// that names a lease (at start-up, and after a snapshot from the leader).
pub fn recover(store: &mvcc::Store, lessor: &Lessor) -> Result<()> {
    let mut records = Vec::new();
    for (id, value) in store.leases().context("read the lease table")? {
        let row = api::leasepb::Lease::decode(value.as_slice())
            .with_context(|| format!("lease {id:016x} is unreadable"))?;
        records.push(LeaseRecord {
            id,
            ttl: row.ttl,
            remaining_ttl: row.remaining_ttl,
        });
    }
    let mut attached = Vec::new();
    let mut start = vec![0u8];
    loop {
        let page = store
            .range(&RangeRequest {
                key: start.clone(),
                range_end: vec![0],
                limit: RECOVER_PAGE_KEYS,
                ..Default::default()
            })
            .context("read keys to rebuild lease attachments")?;
        for kv in &page.kvs {
            if kv.lease != lease::NO_LEASE {
                attached.push((kv.key.clone(), kv.lease));
            }
        }
        match page.kvs.last() {
            Some(last) if page.more => {
                start = last.key.clone();
                start.push(0);
            }
            _ => break,
        }
    }
    lessor.recover(&records, &attached);
    tracing::info!(
        leases = records.len(),
        attached_keys = attached.len(),
        "recovered leases"
    );
    Ok(())
}

/// The leader's loop: proposes the revocation of expired leases and, with
/// checkpointing on, the remaining TTLs of long leases.
pub async fn run_expiry(server: Arc<EtcdServer>, stop: tokio::sync::watch::Receiver<bool>) {
    let tick = tokio::time::interval(EXPIRY_CHECK_INTERVAL);
    crate::server::on_ticks_as_leader(server, tick, stop, |server| async move {
        let now = Instant::now();
        for id in server.lessor.expired(now, REVOKES_PER_CHECK_MAX) {
            let server = server.clone();
            tokio::spawn(async move {
                let revoke = InternalRaftRequest {
                    lease_revoke: Some(LeaseRevokeRequest { id }),
                    ..Default::default()
                };
                match server.propose(revoke).await {
                    Ok(_) => server.metrics.lease_expired.inc(),
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
            .lessor
            .due_checkpoints(now, lease::CHECKPOINT_BATCH_MAX);
        if !due.is_empty() {
            propose_checkpoints(&server, due);
        }
    })
    .await;
}

/// Proposes checkpoints without waiting for them.
fn propose_checkpoints(server: &Arc<EtcdServer>, checkpoints: Vec<(i64, i64)>) {
    let server = server.clone();
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

/// What the primary lessor answered, or why another attempt is needed.
enum Attempt<T> {
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

    async fn renew_local(self: &Arc<Self>, id: i64) -> Attempt<i64> {
        let mut result = self.lessor.renew(id, Instant::now());
        if result == Err(LeaseError::NotFound) {
            self.wait_applied_commit().await;
            result = self.lessor.renew(id, Instant::now());
        }
        match result {
            Ok((ttl, clear_checkpoint)) => {
                self.metrics.lease_renewed.inc();
                if clear_checkpoint {
                    propose_checkpoints(self, vec![(id, 0)]);
                }
                Attempt::Done(Ok(ttl))
            }
            Err(LeaseError::NotPrimary) => Attempt::Retry(EtcdError::NotLeader),
            Err(e) => Attempt::Done(Err(lease_error(e))),
        }
    }

    async fn time_to_live_local(
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

/// The peer-port end of forwarded keep-alives and TimeToLive: answered only
/// by the primary; anything else is Unavailable, and the follower retries.
pub struct LeaseForwardService {
    server: Arc<OnceLock<Arc<EtcdServer>>>,
}

impl LeaseForwardService {
    pub fn new(server: Arc<OnceLock<Arc<EtcdServer>>>) -> Self {
        LeaseForwardService { server }
    }

    fn server(&self, version: u32) -> Result<Arc<EtcdServer>, Status> {
        if version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "peer protocol version {version} is not {PROTOCOL_VERSION}"
            )));
        }
        self.server
            .get()
            .cloned()
            .ok_or_else(|| Status::unavailable("etcdserver: server not started yet"))
    }
}

fn forward_status<T>(attempt: Attempt<T>) -> Result<Response<T>, Status> {
    match attempt {
        Attempt::Done(Ok(v)) => Ok(Response::new(v)),
        Attempt::Done(Err(EtcdError::LeaseNotFound)) => {
            Err(Status::not_found("etcdserver: requested lease not found"))
        }
        Attempt::Done(Err(e)) => Err(e.into()),
        Attempt::Retry(e) => Err(Status::unavailable(e.to_string())),
    }
}

#[tonic::async_trait]
impl Leases for LeaseForwardService {
    async fn renew(
        &self,
        request: Request<LeaseRenewRequest>,
    ) -> Result<Response<LeaseRenewResponse>, Status> {
        let r = request.into_inner();
        let server = self.server(r.version)?;
        if server.raft_status.leader() != server.member_id {
            return Err(Status::unavailable("etcdserver: not leader"));
        }
        let attempt = match server.renew_local(r.id).await {
            Attempt::Done(v) => Attempt::Done(v.map(|ttl| LeaseRenewResponse { ttl })),
            Attempt::Retry(e) => Attempt::Retry(e),
        };
        forward_status(attempt)
    }

    async fn time_to_live(
        &self,
        request: Request<LeaseTimeToLiveForward>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let r = request.into_inner();
        let server = self.server(r.version)?;
        if server.raft_status.leader() != server.member_id {
            return Err(Status::unavailable("etcdserver: not leader"));
        }
        let req = r.request.unwrap_or_default();
        forward_status(server.time_to_live_local(&req).await)
    }
}
