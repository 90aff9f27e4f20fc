//! `EtcdServer`: the handle the client and peer edges and the duties use.
//! Its verbs (etcd's `RaftKV`, `Lessor` and membership calls: `range`,
//! `put`, `txn`, `lease_grant`, `member_add`, …) propose requests to raft
//! and return typed responses, serve linearizable reads through ReadIndex,
//! and report status. Keep-alives and TimeToLive, answered by the primary
//! lessor, are in `leases`; membership changes with etcd's checks in
//! `membership`. It owns no loop itself: the raft node and the applier run
//! on their own threads.
//!
//! May import: `node`, `state`, `config`, `transport`, the crate root.

mod auth;
pub mod leases;
pub mod membership;
pub mod report;

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use api::etcdserverpb::{
    AlarmRequest, AlarmResponse, CompactionRequest, CompactionResponse, DeleteRangeRequest,
    DeleteRangeResponse, InternalRaftRequest, LeaseGrantRequest, LeaseGrantResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    RequestHeader, ResponseHeader, TxnRequest, TxnResponse,
};
use api::EtcdError;
use prost::Message;
use raft::eraftpb::ConfChange;
use tokio::sync::{oneshot, watch, Semaphore};

use crate::config::Config;
use crate::limits;
use crate::metrics::Metrics;
use crate::node::apply::{ApplyOutcome, ApplyResult};
use crate::node::raft_node::{RaftMsg, RaftStatus};
use crate::node::wait::Wait;
use crate::state::alarm::AlarmStore;
use crate::state::auth::Auth;
use crate::status::Error;
use crate::transport::Transport;
pub use auth::Caller;
use datadir::ids::RequestIdGenerator;
use datadir::membership::Cluster;

/// The member's core: what it knows (configuration, membership, alarms,
/// the store, the lessor, the watch hub, raft's status) is private and read
/// through the accessors below; what it does goes through its verbs.
pub struct EtcdServer {
    cfg: Arc<Config>,
    member_id: u64,
    // What the applier keeps up to date (and the raft loop publishes).
    cluster: Arc<Cluster>,
    alarms: Arc<AlarmStore>,
    store: Arc<mvcc::Store>,
    lessor: Arc<lease::Lessor>,
    watch_hub: Arc<mvcc::WatchHub>,
    raft_status: Arc<RaftStatus>,
    transport: Transport,
    metrics: Arc<Metrics>,
    /// Proposals and read-index requests go to the raft loop here.
    raft_tx: Sender<RaftMsg>,
    /// Proposers wait here for their entries' outcomes.
    wait: Arc<Wait>,
    /// The applier's last applied index.
    applied: watch::Receiver<u64>,
    request_ids: RequestIdGenerator,
    /// Bounds the proposals in flight (`limits::PROPOSALS_IN_FLIGHT_MAX`).
    proposal_slots: Semaphore,
    /// Users, roles and the tokens this member holds (changed by the applier).
    auth: Arc<Auth>,
}

impl EtcdServer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: Arc<Config>,
        member_id: u64,
        cluster: Arc<Cluster>,
        alarms: Arc<AlarmStore>,
        transport: Transport,
        store: Arc<mvcc::Store>,
        raft_status: Arc<RaftStatus>,
        lessor: Arc<lease::Lessor>,
        watch_hub: Arc<mvcc::WatchHub>,
        metrics: Arc<Metrics>,
        raft_tx: Sender<RaftMsg>,
        wait: Arc<Wait>,
        applied: watch::Receiver<u64>,
        auth: Arc<Auth>,
    ) -> Self {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        EtcdServer {
            cfg,
            member_id,
            cluster,
            alarms,
            transport,
            store,
            raft_status,
            lessor,
            watch_hub,
            metrics,
            raft_tx,
            wait,
            applied,
            request_ids: RequestIdGenerator::new(member_id, now_ms),
            proposal_slots: Semaphore::new(limits::PROPOSALS_IN_FLIGHT_MAX),
            auth,
        }
    }

    /// The member's configuration, as it started.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// This member's ID.
    pub fn member_id(&self) -> u64 {
        self.member_id
    }

    /// The cluster's membership and versions, as applied.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// The alarms raised in the cluster, as applied.
    pub fn alarms(&self) -> &AlarmStore {
        &self.alarms
    }

    /// Connections to the other members (their peer ports).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The key-value store (reads only: writes go through raft).
    pub fn store(&self) -> &Arc<mvcc::Store> {
        &self.store
    }

    /// The leader's ID as this member last heard it (0: none known).
    pub fn leader(&self) -> u64 {
        self.raft_status.leader()
    }

    /// The raft node's term, index and leader, as it last published them.
    pub fn raft_status(&self) -> &RaftStatus {
        &self.raft_status
    }

    /// The lessor (leases as applied, and the primary lessor's clocks).
    pub fn lessor(&self) -> &Arc<lease::Lessor> {
        &self.lessor
    }

    /// Where watchers register and committed changes are fanned out.
    pub fn watch_hub(&self) -> &Arc<mvcc::WatchHub> {
        &self.watch_hub
    }

    /// Users, roles and tokens, as applied.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The member's Prometheus families.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A fresh ID from the member's request ID generator (also lease IDs).
    pub fn next_request_id(&self) -> u64 {
        self.request_ids.next()
    }

    pub fn request_timeout(&self) -> Duration {
        self.cfg.request_timeout()
    }

    /// A response header for `revision` (0: the store's current revision).
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster.id,
            member_id: self.member_id,
            revision: if revision == 0 {
                self.store.current_revision()
            } else {
                revision
            },
            raft_term: self.raft_status.term(),
        }
    }

    /// The header of Cluster-service responses: etcd leaves the revision out.
    pub fn cluster_header(&self) -> ResponseHeader {
        ResponseHeader {
            revision: 0,
            ..self.header(0)
        }
    }

    /// Fills in the cluster fields of a header that mvcc produced.
    pub fn fill_header(&self, header: &mut Option<ResponseHeader>) {
        let revision = header.as_ref().map_or(0, |h| h.revision);
        *header = Some(self.header(revision));
    }

    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// The backend quota check etcd runs before proposing a request that adds
    /// data: past the quota the request fails with "database space exceeded"
    /// and this member raises the NOSPACE alarm (once; the alarm is applied
    /// through raft, so every member refuses such writes until it is disarmed).
    pub fn check_quota(self: &Arc<Self>, cost: u64) -> Result<(), EtcdError> {
        let quota = crate::state::quota::effective_quota(self.cfg.quota_backend_bytes);
        if crate::state::quota::fits(quota, self.store.db_size_bytes(), cost) {
            return Ok(());
        }
        let raised = self.alarms.active().iter().any(|a| {
            a.member_id == self.member_id && a.alarm == api::etcdserverpb::AlarmType::Nospace as i32
        });
        if !raised {
            let server = self.clone();
            tokio::spawn(async move {
                let activate = InternalRaftRequest {
                    alarm: Some(api::etcdserverpb::AlarmRequest {
                        action: api::etcdserverpb::alarm_request::AlarmAction::Activate as i32,
                        member_id: server.member_id,
                        alarm: api::etcdserverpb::AlarmType::Nospace as i32,
                    }),
                    ..Default::default()
                };
                if let Err(e) = server.propose(activate).await {
                    tracing::warn!(error = %e, "failed to raise the NOSPACE alarm");
                }
            });
        }
        Err(EtcdError::NoSpace)
    }

    /// Reads keys (etcd's `RaftKV.Range`): linearizable through ReadIndex
    /// unless `req.serializable`; validation and learners are the caller's.
    pub async fn range(&self, caller: &Caller, req: &RangeRequest) -> Result<RangeResponse, Error> {
        if !req.serializable {
            self.read_barrier().await?;
        }
        self.check_read(caller, &req.key, &req.range_end)?;
        self.metrics.mvcc.record(1, 0, 0, 0);
        let mut resp = self.store.range(req)?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// Writes a key (etcd's `RaftKV.Put`): proposed through raft, answered
    /// once applied, with this member's header. The edge's checks (quota,
    /// validation, learners) are the caller's, as in etcd.
    pub async fn put(&self, caller: &Caller, req: PutRequest) -> Result<PutResponse, EtcdError> {
        self.write(
            caller,
            InternalRaftRequest {
                put: Some(req),
                ..Default::default()
            },
        )
        .await
    }

    /// Deletes a key or a range (etcd's `RaftKV.DeleteRange`).
    pub async fn delete_range(
        &self,
        caller: &Caller,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, EtcdError> {
        self.write(
            caller,
            InternalRaftRequest {
                delete_range: Some(req),
                ..Default::default()
            },
        )
        .await
    }

    /// A transaction that writes, through raft (etcd's `RaftKV.Txn`; a
    /// read-only one is the caller's to serve locally).
    pub async fn txn(&self, caller: &Caller, req: TxnRequest) -> Result<TxnResponse, EtcdError> {
        self.write(
            caller,
            InternalRaftRequest {
                txn: Some(req),
                ..Default::default()
            },
        )
        .await
    }

    /// Compacts the key history (etcd's `RaftKV.Compact`).
    pub async fn compact(
        &self,
        caller: &Caller,
        req: CompactionRequest,
    ) -> Result<CompactionResponse, EtcdError> {
        self.write(
            caller,
            InternalRaftRequest {
                compaction: Some(req),
                ..Default::default()
            },
        )
        .await
    }

    /// Grants a lease (etcd's `Lessor.LeaseGrant`); without an ID the
    /// member picks one, positive, from its request IDs, as etcd does.
    pub async fn lease_grant(
        &self,
        caller: &Caller,
        mut req: LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, EtcdError> {
        while req.id == lease::NO_LEASE {
            req.id = (self.next_request_id() & (i64::MAX as u64)) as i64;
        }
        self.write(
            caller,
            InternalRaftRequest {
                lease_grant: Some(req),
                ..Default::default()
            },
        )
        .await
    }

    /// Revokes a lease and deletes its keys (etcd's `Lessor.LeaseRevoke`).
    pub async fn lease_revoke(
        &self,
        caller: &Caller,
        req: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, EtcdError> {
        self.write(
            caller,
            InternalRaftRequest {
                lease_revoke: Some(req),
                ..Default::default()
            },
        )
        .await
    }

    /// Activates, deactivates or lists alarms; every action goes through
    /// raft, a GET included, as in etcd.
    pub async fn alarm(
        &self,
        caller: &Caller,
        req: AlarmRequest,
    ) -> Result<AlarmResponse, EtcdError> {
        self.write(
            caller,
            InternalRaftRequest {
                alarm: Some(req),
                ..Default::default()
            },
        )
        .await
    }

    /// Proposes `request` and returns the applier's answer of type `T`,
    /// with this member's header.
    async fn write<T: Answer>(
        &self,
        caller: &Caller,
        request: InternalRaftRequest,
    ) -> Result<T, EtcdError> {
        match T::pick(self.propose_as(caller, request).await?) {
            Ok(mut resp) => {
                self.fill_header(resp.header_mut());
                Ok(resp)
            }
            Err(other) => Err(unexpected(other)),
        }
    }

    /// Proposes `req` through raft and waits until it is applied; the typed
    /// verbs above are the way in for client requests.
    pub async fn propose(&self, req: InternalRaftRequest) -> Result<ApplyResult, EtcdError> {
        self.propose_as(&Caller::Member, req).await
    }

    /// Proposes `req` for `caller`, whose identity the entry carries so
    /// that the applier checks its permissions (etcd's header username and
    /// auth revision).
    pub async fn propose_as(
        &self,
        caller: &Caller,
        mut req: InternalRaftRequest,
    ) -> Result<ApplyResult, EtcdError> {
        let max_request_bytes = self.cfg.max_request_bytes;
        let who = self.identity(caller);
        self.submit(|id| {
            req.header = Some(RequestHeader {
                id,
                username: who.user,
                auth_revision: who.revision,
            });
            let data = req.encode_to_vec();
            if data.len() as u64 > max_request_bytes {
                return Err(EtcdError::RequestTooLarge);
            }
            Ok(RaftMsg::Propose { id, data })
        })
        .await
    }

    /// Proposes a membership change and waits until it is applied (or rejected
    /// at apply time with etcd's error).
    pub async fn propose_conf_change(&self, mut cc: ConfChange) -> Result<(), EtcdError> {
        self.submit(|id| {
            cc.id = id;
            Ok(RaftMsg::ProposeConfChange { cc })
        })
        .await
        .map(|_| ())
    }

    /// Takes a proposal slot and a request ID, registers the waiter, hands the
    /// message built for that ID to the raft loop, and waits for the outcome.
    async fn submit(
        &self,
        message: impl FnOnce(u64) -> Result<RaftMsg, EtcdError>,
    ) -> Result<ApplyResult, EtcdError> {
        let _slot = self
            .proposal_slots
            .acquire()
            .await
            .map_err(|_| EtcdError::Stopped)?;
        let id = self.request_ids.next();
        let message = message(id)?;
        let rx = self.wait.register(id);
        if self.raft_tx.send(message).is_err() {
            self.wait.cancel(id);
            self.metrics.proposals_failed.inc();
            return Err(EtcdError::Stopped);
        }
        self.metrics.proposals_pending.inc();
        let _pending = Pending(&self.metrics);
        self.await_outcome(id, rx).await
    }

    async fn await_outcome(
        &self,
        id: u64,
        rx: oneshot::Receiver<ApplyOutcome>,
    ) -> Result<ApplyResult, EtcdError> {
        match tokio::time::timeout(self.request_timeout(), rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => {
                self.wait.cancel(id);
                self.metrics.proposals_failed.inc();
                Err(if self.raft_status.leader() == 0 {
                    EtcdError::NoLeader
                } else {
                    EtcdError::Timeout
                })
            }
        }
    }

    /// As leader: whether learner `id` has caught up enough to be promoted.
    pub async fn learner_ready(&self, id: u64) -> Result<bool, EtcdError> {
        let (reply, rx) = oneshot::channel();
        self.raft_tx
            .send(RaftMsg::LearnerReady { id, reply })
            .map_err(|_| EtcdError::Stopped)?;
        rx.await.map_err(|_| EtcdError::Stopped)?
    }

    /// Moves leadership from this member (the leader) to `target`, waiting until
    /// raft reports the new leader (etcd's MoveLeader).
    pub async fn move_leader(&self, target: u64) -> Result<(), EtcdError> {
        let leader = self.raft_status.leader();
        if leader != self.member_id {
            return Err(EtcdError::NotLeader);
        }
        match self.cluster.member(target) {
            Some(m) if !m.is_learner => {}
            _ => return Err(EtcdError::BadLeaderTransferee),
        }
        tracing::info!(
            local_member_id = %format!("{:x}", self.member_id),
            current_leader_member_id = %format!("{leader:x}"),
            transferee_member_id = %format!("{target:x}"),
            "leadership transfer starting"
        );
        let started = std::time::Instant::now();
        self.raft_tx
            .send(RaftMsg::TransferLeader { target })
            .map_err(|_| EtcdError::Stopped)?;
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        let mut poll = tokio::time::interval(Duration::from_millis(self.cfg.heartbeat_interval_ms));
        while self.raft_status.leader() != target {
            if tokio::time::Instant::now() >= deadline {
                return Err(EtcdError::TimeoutLeaderTransfer);
            }
            poll.tick().await;
        }
        tracing::info!(
            local_member_id = %format!("{:x}", self.member_id),
            old_leader_member_id = %format!("{leader:x}"),
            new_leader_member_id = %format!("{target:x}"),
            took = ?started.elapsed(),
            "leadership transfer finished"
        );
        Ok(())
    }

    /// Whether this member is a learner (it then serves only serializable reads).
    pub fn is_learner(&self) -> bool {
        self.cluster.is_learner(self.member_id)
    }

    /// Waits until a local read reflects every write acknowledged before this
    /// call (ReadIndex, then applied ≥ that index).
    pub async fn read_barrier(&self) -> Result<(), EtcdError> {
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        let (tx, rx) = oneshot::channel();
        self.raft_tx
            .send(RaftMsg::ReadIndex { reply: tx })
            .map_err(|_| EtcdError::Stopped)?;
        let index = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => return Err(EtcdError::Stopped),
            Err(_) => return Err(EtcdError::Timeout),
        };
        self.wait_applied(index, deadline).await
    }

    /// Waits until the applier has applied `index` (or `deadline` passes).
    pub async fn wait_applied(
        &self,
        index: u64,
        deadline: tokio::time::Instant,
    ) -> Result<(), EtcdError> {
        let mut applied = self.applied.clone();
        let reached = tokio::time::timeout_at(deadline, async move {
            applied.wait_for(|a| *a >= index).await.is_ok()
        })
        .await;
        match reached {
            Ok(true) => Ok(()),
            Ok(false) => Err(EtcdError::Stopped),
            Err(_) => Err(EtcdError::TimeoutWaitAppliedIndex),
        }
    }

    /// A channel to the leader's peer port (the first of its peer URLs that
    /// answers), for requests only the leader serves.
    pub async fn dial_leader(&self) -> Result<tonic::transport::Channel, EtcdError> {
        let urls = self
            .cluster
            .member(self.raft_status.leader())
            .map(|m| m.peer_ur_ls)
            .ok_or(EtcdError::NoLeader)?;
        for url in &urls {
            match self.transport.dialer().connect(url).await {
                Ok(channel) => return Ok(channel),
                Err(e) => tracing::debug!(error = %e, "cannot reach the leader"),
            }
        }
        Err(EtcdError::NoLeader)
    }

    /// Stops the raft loop; pending proposers get "server stopped".
    pub fn stop(&self) {
        let _ = self.raft_tx.send(RaftMsg::Shutdown);
        self.wait.fail_all(EtcdError::Stopped);
    }
}

/// A proposal waiting for its outcome (etcd's `proposals_pending`), for as long as it lives.
struct Pending<'a>(&'a Metrics);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.proposals_pending.dec();
    }
}

/// Runs `work` on every tick of `tick` while this member is the leader,
/// until `stop` changes: the shape of every leader-only background duty
/// (lease expiry, the cluster version monitor, the corruption check).
pub async fn on_ticks_as_leader<F, Fut>(
    server: Arc<EtcdServer>,
    mut tick: tokio::time::Interval,
    mut stop: watch::Receiver<bool>,
    mut work: F,
) where
    F: FnMut(Arc<EtcdServer>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if server.raft_status.leader() == server.member_id {
            work(server.clone()).await;
        }
    }
}

/// A response the applier answers a client request with.
trait Answer: Sized {
    /// The response, if `result` is one of this type.
    fn pick(result: ApplyResult) -> Result<Self, ApplyResult>;
    fn header_mut(&mut self) -> &mut Option<ResponseHeader>;
}

macro_rules! answers {
    ($($variant:ident => $response:ty),* $(,)?) => {$(
        impl Answer for $response {
            fn pick(result: ApplyResult) -> Result<Self, ApplyResult> {
                match result {
                    ApplyResult::$variant(resp) => Ok(resp),
                    other => Err(other),
                }
            }
            fn header_mut(&mut self) -> &mut Option<ResponseHeader> {
                &mut self.header
            }
        }
    )*};
}

answers! {
    Put => PutResponse,
    DeleteRange => DeleteRangeResponse,
    Txn => TxnResponse,
    Compaction => CompactionResponse,
    Alarm => AlarmResponse,
    LeaseGrant => LeaseGrantResponse,
    LeaseRevoke => LeaseRevokeResponse,
    AuthEnable => api::etcdserverpb::AuthEnableResponse,
    AuthDisable => api::etcdserverpb::AuthDisableResponse,
    AuthStatus => api::etcdserverpb::AuthStatusResponse,
    Authenticate => api::etcdserverpb::AuthenticateResponse,
    UserAdd => api::etcdserverpb::AuthUserAddResponse,
    UserGet => api::etcdserverpb::AuthUserGetResponse,
    UserList => api::etcdserverpb::AuthUserListResponse,
    UserDelete => api::etcdserverpb::AuthUserDeleteResponse,
    UserChangePassword => api::etcdserverpb::AuthUserChangePasswordResponse,
    UserGrantRole => api::etcdserverpb::AuthUserGrantRoleResponse,
    UserRevokeRole => api::etcdserverpb::AuthUserRevokeRoleResponse,
    RoleAdd => api::etcdserverpb::AuthRoleAddResponse,
    RoleGet => api::etcdserverpb::AuthRoleGetResponse,
    RoleList => api::etcdserverpb::AuthRoleListResponse,
    RoleDelete => api::etcdserverpb::AuthRoleDeleteResponse,
    RoleGrantPermission => api::etcdserverpb::AuthRoleGrantPermissionResponse,
    RoleRevokePermission => api::etcdserverpb::AuthRoleRevokePermissionResponse,
}

/// A result of another kind than the request's: a bug of ours, never a
/// client's doing. Answered as etcd answers a request its applier does not
/// know.
fn unexpected(result: ApplyResult) -> EtcdError {
    tracing::error!(
        ?result,
        "the applier answered with a result of another kind"
    );
    EtcdError::UnknownMethod
}
