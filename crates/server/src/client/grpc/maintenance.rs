//! The Maintenance service: Status (what `etcdctl endpoint status` shows),
//! Alarm, Defragment, MoveLeader, Hash, HashKV, Snapshot and Downgrade
//! (`crate::duties::downgrade`).

use std::sync::Arc;

use api::etcdserverpb::maintenance_server::Maintenance;
use api::etcdserverpb::*;
use tonic::{Request, Response, Status};

use crate::server::EtcdServer;
use datadir::membership::{CLUSTER_VERSION, SERVER_VERSION};

pub struct MaintenanceService {
    server: Arc<EtcdServer>,
}

impl MaintenanceService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        MaintenanceService { server }
    }

    /// The admin-only calls (etcd's `authMaintenanceServer`): root once
    /// auth is on.
    async fn admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let caller = super::caller(&self.server, request).await?;
        Ok(self.server.check_admin(&caller)?)
    }
}

use super::snapshot::SnapshotStream;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        self.server.require_user(&caller)?;
        let s = &self.server;
        let quota = if s.config().quota_backend_bytes <= 0 {
            crate::state::quota::DEFAULT_QUOTA_BYTES
        } else {
            s.config().quota_backend_bytes
        };
        let status = s.status();
        let job = status.downgrade;
        Ok(Response::new(StatusResponse {
            header: Some(s.header(0)),
            version: SERVER_VERSION.to_string(),
            db_size: status.db_size_bytes as i64,
            leader: status.leader,
            raft_index: status.commit_index,
            raft_term: status.term,
            raft_applied_index: status.applied_index,
            errors: status
                .alarms
                .iter()
                .map(|a| {
                    let name = AlarmType::try_from(a.alarm).map_or("UNKNOWN", |t| t.as_str_name());
                    // Go's compact protobuf text of the AlarmMember, as
                    // etcd reports it (each field followed by a space).
                    format!("memberID:{} alarm:{} ", a.member_id, name)
                })
                .collect(),
            db_size_in_use: status.db_size_in_use_bytes as i64,
            is_learner: status.is_learner,
            // The recorded storage version (it follows the cluster version,
            // `storage_version.rs`); below 3.6 none is recorded and the
            // cluster version is reported.
            storage_version: status
                .storage_version
                .or(status.cluster_version)
                .unwrap_or_else(|| CLUSTER_VERSION.to_string()),
            db_size_quota: quota,
            // etcd 3.6 always sends it, disabled when no job runs.
            downgrade_info: Some(DowngradeInfo {
                enabled: job.enabled,
                target_version: job.target_version,
            }),
        }))
    }

    /// Every alarm action goes through raft, GET included, as in etcd.
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        let req = request.into_inner();
        // Listing needs a user; raising or clearing one is root's (etcd 3.7).
        if req.action == api::etcdserverpb::alarm_request::AlarmAction::Get as i32 {
            self.server.require_user(&caller)?;
        } else {
            self.server.check_admin(&caller)?;
        }
        Ok(Response::new(self.server.alarm(&caller, req).await?))
    }
    /// Defragments this member's backend (etcdctl asks each endpoint). Reads
    /// go on meanwhile and writes wait only for the switch-over
    /// (`mvcc::Store::defragment`). etcd's response carries no header.
    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.admin(&request).await?;
        tracing::info!("starting defragment");
        let store = self.server.store().clone();
        let metrics = &self.server.metrics();
        metrics.defrag_inflight.set(1);
        let report = tokio::task::spawn_blocking(move || store.defragment()).await;
        metrics.defrag_inflight.set(0);
        let report = report.map_err(|e| Status::internal(format!("defragment stopped: {e}")))?;
        match report {
            Ok(r) => {
                metrics.backend_defrag.observe(r.took.as_secs_f64());
                tracing::info!(
                    current_db_size_bytes = r.size_before,
                    new_db_size_bytes = r.size_after,
                    writes_paused_ms = r.writes_paused.as_millis() as u64,
                    took_ms = r.took.as_millis() as u64,
                    "finished defragment"
                );
                Ok(Response::new(DefragmentResponse { header: None }))
            }
            Err(e) => {
                tracing::warn!(error = %e, "failed to defragment");
                Err(crate::status::mvcc_status(e))
            }
        }
    }
    /// A hash of the whole backend but the raft position (etcd: for tests).
    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.admin(&request).await?;
        let started = std::time::Instant::now();
        let hash = self
            .server
            .store()
            .hash()
            .map_err(crate::status::mvcc_status)?;
        self.server
            .metrics()
            .hash
            .observe(started.elapsed().as_secs_f64());
        Ok(Response::new(HashResponse {
            header: Some(self.server.header(0)),
            hash,
        }))
    }
    /// etcd's HashKV: members at the same revision and compaction agree.
    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        self.admin(&request).await?;
        let rev = request.into_inner().revision;
        let started = std::time::Instant::now();
        let h = self
            .server
            .store()
            .hash_kv(rev)
            .map_err(crate::status::mvcc_status)?;
        self.server
            .metrics()
            .hash_rev
            .observe(started.elapsed().as_secs_f64());
        Ok(Response::new(HashKvResponse {
            header: Some(self.server.header(h.current_revision)),
            hash: h.hash,
            compact_revision: h.compact_revision,
            hash_revision: h.hash_revision,
        }))
    }
    type SnapshotStream = SnapshotStream;
    /// The backend image in 32 KiB chunks, then its SHA-256 (`snapshot.rs`).
    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.admin(&request).await?;
        let cluster = datadir::interchange::backend::EtcdCluster::of(self.server.cluster());
        super::snapshot::stream(self.server.store(), cluster).map(Response::new)
    }
    /// Only the leader moves leadership (etcdctl finds it among the endpoints).
    /// etcd's response carries no header.
    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        self.admin(&request).await?;
        self.server
            .move_leader(request.into_inner().target_id)
            .await?;
        Ok(Response::new(MoveLeaderResponse { header: None }))
    }
    /// Validates, starts or cancels a downgrade of the cluster version
    /// (`crate::duties::downgrade`, etcd 3.6's answers and errors).
    async fn downgrade(
        &self,
        request: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        self.admin(&request).await?;
        let mut resp =
            crate::duties::downgrade::downgrade(&self.server, &request.into_inner()).await?;
        resp.header = Some(self.server.header(0));
        Ok(Response::new(resp))
    }
}
