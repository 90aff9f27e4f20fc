//! The Maintenance Downgrade RPC, as etcd 3.6 answers it (its
//! `EtcdServer.Downgrade` and version `Manager`), and the leader's part of
//! a downgrade job (its version `Monitor`). The rules are in `version.rs`.
//!
//! ```text
//! VALIDATE v  target = v as major.minor ("3.5" or "3.5.0"; else wrong format)
//!             no cluster version yet → cluster version not found
//!             ReadIndex barrier, then target must be cluster version − 1 minor
//!             and no job may run; answers the cluster version ("3.6")
//! ENABLE v    VALIDATE's checks, then DowngradeInfoSetRequest{enabled, "3.5.0"}
//!             through raft; answers the cluster version
//! CANCEL      ReadIndex barrier, a job must run, DowngradeInfoSetRequest{off};
//!             etcd 3.6 only logs a failure ("failed to cancel downgrade") and
//!             always answers the cluster version
//! ```
//! The leader's monitor then moves the cluster version (`monitor`).
//!
//! Deliberately like etcd 3.6, unlike 3.5: CANCEL without a job succeeds
//! (3.5 answered "etcdserver: no inflight downgrade job").

use api::etcdserverpb::downgrade_request::DowngradeAction;
use api::etcdserverpb::{
    ClusterVersionSetRequest, DowngradeInfoSetRequest, DowngradeRequest, DowngradeResponse,
    InternalRaftRequest,
};
use api::EtcdError;

use crate::server::EtcdServer;
use datadir::version::{self, MajorMinor, NoDowngrade};

/// Serves one Downgrade request (the header is the caller's).
pub async fn downgrade(
    server: &EtcdServer,
    request: &DowngradeRequest,
) -> Result<DowngradeResponse, EtcdError> {
    match DowngradeAction::try_from(request.action) {
        Ok(DowngradeAction::Validate) => validate(server, &request.version).await,
        Ok(DowngradeAction::Enable) => enable(server, &request.version).await.inspect_err(|e| {
            tracing::warn!(error = %e, "reject downgrade request");
        }),
        Ok(DowngradeAction::Cancel) => Ok(cancel(server).await),
        Err(_) => Err(EtcdError::UnknownMethod),
    }
}

async fn validate(server: &EtcdServer, version: &str) -> Result<DowngradeResponse, EtcdError> {
    let target = version::parse_downgrade_target(version)?;
    let cluster = server
        .cluster()
        .cluster_version()
        .ok_or(EtcdError::ClusterVersionUnavailable)?;
    check_target(server, target).await?;
    Ok(answer(Some(cluster)))
}

/// etcd's `Manager.DowngradeValidate`: after a read barrier (so a job started
/// through another member is seen), the target must be the one version the
/// cluster may go down to, and no job may be running.
async fn check_target(server: &EtcdServer, target: MajorMinor) -> Result<(), EtcdError> {
    server.read_barrier().await?;
    let cluster = server
        .cluster()
        .cluster_version()
        .ok_or(EtcdError::ClusterVersionUnavailable)?;
    if target != cluster.allowed_downgrade() {
        return Err(EtcdError::InvalidDowngradeTargetVersion);
    }
    if server.cluster().downgrade_info().enabled {
        return Err(EtcdError::DowngradeInProcess);
    }
    Ok(())
}

async fn enable(server: &EtcdServer, version: &str) -> Result<DowngradeResponse, EtcdError> {
    let target = version::parse_downgrade_target(version)?;
    check_target(server, target).await?;
    propose_job(server, true, target.to_string()).await?;
    Ok(answer(server.cluster().cluster_version()))
}

async fn cancel(server: &EtcdServer) -> DowngradeResponse {
    let cancelled = async {
        server.read_barrier().await?;
        if !server.cluster().downgrade_info().enabled {
            return Err(EtcdError::NoInflightDowngrade);
        }
        propose_job(server, false, String::new()).await
    };
    if let Err(e) = cancelled.await {
        tracing::warn!(error = %e, "failed to cancel downgrade");
    }
    answer(server.cluster().cluster_version())
}

async fn propose_job(server: &EtcdServer, enabled: bool, ver: String) -> Result<(), EtcdError> {
    server
        .propose(InternalRaftRequest {
            downgrade_info_set: Some(DowngradeInfoSetRequest { enabled, ver }),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

/// A Downgrade answer carries the cluster version as major.minor ("3.6").
fn answer(cluster: Option<MajorMinor>) -> DowngradeResponse {
    DowngradeResponse {
        header: None,
        version: cluster.map(MajorMinor::short).unwrap_or_default(),
    }
}

/// One check of the leader's version monitor (etcd's
/// `UpdateClusterVersionIfNeeded`, then `CancelDowngradeIfNeeded`): moves
/// the cluster version where the members and the job say, and ends a job
/// once every member runs its target.
pub async fn monitor(server: &EtcdServer) {
    let job = server.cluster().downgrade_info();
    let decision = version::decide_cluster_version(
        server.cluster().cluster_version(),
        server.cluster().lowest_member_version(),
        &job,
    );
    match decision {
        Ok(None) => {}
        Ok(Some(wanted)) => {
            let set = InternalRaftRequest {
                cluster_version_set: Some(ClusterVersionSetRequest {
                    ver: wanted.to_string(),
                }),
                ..Default::default()
            };
            if let Err(e) = server.propose(set).await {
                tracing::warn!(error = %e, "failed to set the cluster version");
            }
        }
        Err(NoDowngrade::FromClusterVersion { cluster, .. }) => tracing::error!(
            downgrade_target = %job.target_version,
            cluster_version = %cluster,
            "Cannot downgrade from cluster-version to downgrade-target"
        ),
        Err(NoDowngrade::FromMinimalServerVersion { minimal, .. }) => tracing::error!(
            downgrade_target = %job.target_version,
            minimal_server_version = %minimal,
            "Cannot downgrade from minimal-server-version to downgrade-target"
        ),
    }
    let Some(target) = job.target() else {
        return;
    };
    let versions = server.cluster().member_versions();
    if versions.is_empty() || !version::downgrade_finished(&versions, target) {
        return;
    }
    tracing::info!(
        cluster_version = %job.target_version,
        "the cluster has been downgraded"
    );
    if let Err(e) = propose_job(server, false, String::new()).await {
        tracing::warn!(error = %e, "failed to cancel downgrade");
    }
}
