//! The gRPC services of etcd's v3 API that this server implements so far:
//! KV, Maintenance (Status) and Cluster (MemberList). The others (Watch,
//! Lease, Auth, the rest of Cluster and Maintenance) answer `Unimplemented`
//! until their issues land.

mod cluster;
mod concurrency;
mod kv;
mod lease;
mod maintenance;
mod membership;
mod snapshot;
mod watch;

use std::sync::Arc;

use crate::limits;
use crate::server::EtcdServer;

pub use cluster::ClusterService;
pub use concurrency::{ElectionService, LockService};
pub use kv::KvService;
pub use lease::LeaseService;
pub use maintenance::MaintenanceService;
pub use membership::{discover, Discovered, MembershipService};
pub use watch::{run_sync as run_watch_sync, WatchService};

/// The gRPC routes for the client listener, with receive limits sized from
/// --max-request-bytes as etcd sizes them.
pub fn routes(server: Arc<EtcdServer>) -> tonic::service::Routes {
    use api::etcdserverpb::{
        cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
        maintenance_server::MaintenanceServer, watch_server::WatchServer,
    };
    let max_recv = server.cfg.max_request_bytes as usize + limits::GRPC_OVERHEAD_BYTES;
    let kv = KvServer::new(KvService::new(server.clone()))
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let maintenance = MaintenanceServer::new(MaintenanceService::new(server.clone()))
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let watch = WatchServer::new(WatchService::new(server.clone()))
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let lock = api::v3lockpb::lock_server::LockServer::new(LockService::new(server.clone()))
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let election = api::v3electionpb::election_server::ElectionServer::new(ElectionService::new(
        server.clone(),
    ))
    .max_decoding_message_size(max_recv)
    .max_encoding_message_size(usize::MAX);
    let lease = LeaseServer::new(LeaseService::new(server.clone()))
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let cluster = ClusterServer::new(ClusterService::new(server))
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    tonic::service::Routes::new(kv)
        .add_service(maintenance)
        .add_service(watch)
        .add_service(lease)
        .add_service(lock)
        .add_service(election)
        .add_service(cluster)
}
