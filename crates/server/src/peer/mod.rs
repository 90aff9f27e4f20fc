//! The peer port's services beside the raft transport's own: membership
//! (who is in the cluster; promotions forwarded by followers), forwarded
//! lease keep-alives and TimeToLive, and HashKV for corruption checks. One
//! router serves them all with the transport's raft service; each call
//! passes the one protocol version check (`transport::check_version`).
//!
//! The peer port serves before the server handle exists (a joining member's
//! peers reach it while it starts), so the services hold a [`Running`] cell
//! and answer Unavailable until it is set.
//!
//! May import: `server`, `state`, `config`, `transport`, the crate root
//! (`limits`, `status`, `metrics`), and the `api`, `mvcc` and `datadir`
//! crates.

mod corruption;
mod leases;
mod membership;

use std::sync::{Arc, OnceLock};

use tonic::Status;

use crate::metrics::PeerMetrics;
use crate::server::EtcdServer;
use crate::transport::{self, Deliver};
use datadir::membership::Cluster;

/// The server handle, once it runs.
pub type Running = Arc<OnceLock<Arc<EtcdServer>>>;

/// The version check and the running server, for a peer-port call.
fn running(server: &Running, version: u32) -> Result<Arc<EtcdServer>, Status> {
    checked(version)?;
    server
        .get()
        .cloned()
        .ok_or_else(|| Status::unavailable("etcdserver: server not started yet"))
}

/// The protocol version check as a gRPC status.
fn checked(version: u32) -> Result<(), Status> {
    transport::check_version(version).map_err(Status::failed_precondition)
}

/// What the peer port needs to know of its member.
pub struct PeerPort {
    pub member_id: u64,
    pub cluster_id: u64,
    pub cluster: Arc<Cluster>,
    pub store: Arc<mvcc::Store>,
    /// Where raft messages from peers go.
    pub deliver: Deliver,
    pub metrics: PeerMetrics,
    pub running: Running,
}

/// Every service of the peer port, in one router.
pub fn router(port: PeerPort) -> axum::Router {
    use api::peerpb::corruption_server::CorruptionServer;
    use api::peerpb::leases_server::LeasesServer;
    use api::peerpb::membership_server::MembershipServer;
    tonic::service::Routes::new(transport::service(
        port.member_id,
        port.cluster_id,
        port.deliver,
        port.metrics,
    ))
    .add_service(MembershipServer::new(membership::MembershipService::new(
        port.cluster_id,
        port.cluster,
        port.running.clone(),
    )))
    .add_service(LeasesServer::new(leases::LeaseForwardService::new(
        port.running,
    )))
    .add_service(CorruptionServer::new(corruption::CorruptionService::new(
        port.store,
        port.member_id,
        port.cluster_id,
    )))
    .prepare()
    .into_axum_router()
}
